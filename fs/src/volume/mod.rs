//! One volume: an append-only `.dat` file of needles plus its `.idx` file and in-memory index.
//!
//! Writes reserve an offset under the state lock, write the needle through the I/O service
//! (many in flight at once), then — in group-commit mode — wait for the volume's committer,
//! which runs one `fdatasync` for every write that finished before it started. Only then is
//! the in-memory index updated and the write acknowledged. Index records are emitted to the
//! `.idx` file in offset order (a record waits until every needle before it is settled), so
//! the orphan scan after a crash can start at the end of the last record.
//!
//! Start-up recovery, compaction and the on-disk formats are described in `fs/FORMAT.md`.
//!
//! This module owns the [`Volume`] type, its shared state and its lifecycle (create, open,
//! close), key assignment, statistics, the on-disk constants and the record/superblock
//! codecs. The rest lives in submodules, each an `impl Volume` block or a helper task:
//! - `write`: authorization of writes and deletes, append, group commit, `.idx` flushing.
//! - `read`: verified positioned reads (page cache or O_DIRECT).
//! - `compact`: online compaction and its commit protocol.
//! - `recover`: start-up recovery and resolution of interrupted compactions.
//!
//! Locks and invariants:
//! - `state` (a `parking_lot::Mutex<State>`) guards the append offset, the in-memory index,
//!   the counters, the pending assignments, the `.idx` release queue and the current file
//!   handles. It is held only for short, non-`await`ing sections; never across I/O.
//! - `gate` (a `tokio::sync::RwLock`): every write and delete holds it shared from its
//!   authorization to its acknowledgement; compaction's commit and [`Volume::close`] hold it
//!   exclusively, so no write is in flight while the files are swapped or synced for the last
//!   time. While the gate is held, an index entry's offset is valid in `State::dat`.
//! - `flush_lock` serialises `.idx` appends, so records reach the file in release order.
//! - `st.end` only grows (until a compaction swaps in a smaller file): every byte below it
//!   is reserved by a needle whose write finished or is in flight.
//! - Durability of an acknowledged write: in group-commit mode its needle is in the `.dat`
//!   file and `fdatasync`ed; its `.idx` record may still be pending (the volume is the source
//!   of truth, recovery rescans past the last record). In fast mode it is in the page cache.
//! - The index is updated only after the write is durable per the mode; the newest offset
//!   of a key wins (`State::apply`).

use crate::index::{CompactIndex, Entry, DELETED};
use crate::limits;
use crate::needle::NeedleError;
use aergo_os::io::{IoError, IoService};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

mod compact;
mod read;
mod recover;
mod write;

use recover::recover;
pub use recover::resolve_compaction;
use write::{committer, flusher};

/// Magic at the start of a volume file.
pub const VOLUME_MAGIC: &[u8; 8] = b"AERGOVOL";
/// Magic at the start of an index file.
pub const IDX_MAGIC: &[u8; 8] = b"AFSIDX01";
/// Volume format version.
pub const VERSION: u16 = 1;
/// Superblock length; the first needle starts here.
pub const SB_LEN: u64 = 40;
/// Index file header length.
pub const IDX_HEADER_LEN: usize = 16;
/// Index record length.
pub const IDX_RECORD_LEN: usize = 16;
/// Bit of an index record's length marking a tombstone needle.
pub const IDX_TOMBSTONE: u32 = 0x8000_0000;
pub use crate::limits::{MAX_ASSIGNED_KEY, MAX_PENDING, MAX_VOLUME_SIZE};

/// How writes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Acknowledge after an `fdatasync` shared by all concurrent writes (default).
    GroupCommit,
    /// Acknowledge once the needle is in the page cache (no per-write fsync): a power cut
    /// may lose recent acknowledged writes. SIGKILL does not.
    Fast,
}

/// Per-volume settings.
#[derive(Debug, Clone)]
pub struct VolumeConfig {
    /// Size limit of the `.dat` file; a volume that reaches it becomes read-only.
    pub max_size: u64,
    /// Write durability.
    pub durability: Durability,
    /// Compaction copy rate limit in bytes per second (0 = unlimited).
    pub compaction_rate: u64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            max_size: limits::DEFAULT_VOLUME_SIZE,
            durability: Durability::GroupCommit,
            compaction_rate: limits::DEFAULT_COMPACTION_RATE,
        }
    }
}

/// Volume errors.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// I/O through the service failed.
    #[error("volume {volume}: {source}")]
    Io {
        /// Volume id.
        volume: u32,
        /// The error.
        #[source]
        source: IoError,
    },
    /// A filesystem operation (open, rename, ...) failed.
    #[error("{what} {path}: {source}")]
    File {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The group commit's fsync failed; the write is not acknowledged.
    #[error("volume {0}: fsync failed: {1}")]
    Sync(u32, String),
    /// No live needle with this key (or the cookie does not match).
    #[error("not found")]
    NotFound,
    /// A write to a key this volume has not assigned (or no longer remembers assigning), to a
    /// deleted key, or to an existing key with another cookie. Nothing was written.
    #[error(
        "no file with this id to write: ids come from POST /assign or POST / (an assignment \
         not used before a server restart is void), a deleted id is never written again, and \
         an existing file is only replaced with its own cookie"
    )]
    WriteRefused,
    /// Every key the volume may assign is used up (see [`MAX_ASSIGNED_KEY`]).
    #[error("volume {0} has no keys left to assign")]
    KeysExhausted(u32),
    /// The needle on disk failed its checks.
    #[error("volume {volume} key {key:x}: stored needle is corrupt: {detail}")]
    Corrupt {
        /// Volume id.
        volume: u32,
        /// Needle key.
        key: u64,
        /// What check failed.
        detail: String,
    },
    /// The volume accepts no writes (full, or after an I/O error).
    #[error("volume {0} is read-only: {1}")]
    ReadOnly(u32, String),
    /// Bad needle input (name too long, ...).
    #[error("invalid needle: {0}")]
    Needle(#[from] NeedleError),
    /// The superblock is missing or damaged: the volume is not loaded (and not modified).
    #[error("volume file {0}: bad superblock: {1}")]
    BadSuperblock(PathBuf, String),
    /// A compaction is already running on this volume.
    #[error("volume {0} is already being compacted")]
    AlreadyCompacting(u32),
}

/// Statistics of one volume (`/status`).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeStats {
    /// Volume id.
    pub id: u32,
    /// `.dat` size in bytes.
    pub size: u64,
    /// Live needles.
    pub live_needles: u64,
    /// Bytes of live needles.
    pub live_bytes: u64,
    /// Needles deleted or overwritten since the last compaction.
    pub deleted_needles: u64,
    /// Bytes not belonging to live needles (deleted/overwritten needles, tombstones).
    pub garbage_bytes: u64,
    /// `garbage_bytes / (size - superblock)`.
    pub garbage_ratio: f64,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Why, if read-only.
    pub read_only_reason: Option<String>,
    /// Compaction revision of the file.
    pub revision: u32,
    /// Whether a compaction is running.
    pub compacting: bool,
    /// Heap bytes of the in-memory index.
    pub index_bytes: u64,
    /// Index entries (live and deleted keys).
    pub index_entries: u64,
}

/// Result of a successful write.
#[derive(Debug, Clone, Copy)]
pub struct WriteInfo {
    /// Byte offset of the needle.
    pub offset: u64,
    /// Needle length on disk.
    pub len: u32,
    /// The needle's CRC32C (the HTTP ETag).
    pub crc: u32,
}

/// Result of a compaction.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    /// Volume id.
    pub volume: u32,
    /// Size before.
    pub before: u64,
    /// Size after.
    pub after: u64,
    /// Needles copied (including those replayed).
    pub copied: u64,
    /// Needles replayed after the main copy.
    pub replayed: u64,
    /// Wall time in milliseconds.
    pub millis: u64,
}

/// What start-up recovery did (logged; also used by tests).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Index records loaded from `.idx`.
    pub idx_records: u64,
    /// Why the `.idx` was rebuilt from the volume, if it was.
    pub idx_rebuilt: Option<String>,
    /// Needles found past the indexed part (orphan scan).
    pub orphans: u64,
    /// Bytes cut from a torn tail.
    pub torn_bytes: u64,
    /// Corrupt regions skipped in the middle of the scanned part: (offset, length).
    pub skipped: Vec<(u64, u64)>,
}

struct State {
    dat: Arc<File>,
    idx: Arc<File>,
    revision: u32,
    /// Append offset.
    end: u64,
    index: CompactIndex,
    max_key: u64,
    live_needles: u64,
    live_bytes: u64,
    deleted_needles: u64,
    read_only: Option<String>,
    /// Every needle below this offset has its record emitted to `idx_buf`/`.idx`.
    idx_cursor: u64,
    /// Settled needles above the cursor: offset → (length, record if the write succeeded).
    idx_waiting: BTreeMap<u64, (u64, Option<[u8; IDX_RECORD_LEN]>)>,
    /// Records ready to append to `.idx`.
    idx_buf: Vec<u8>,
    /// Append offset of `.idx`.
    idx_end: u64,
    /// Keys changed while a compaction copies (replayed before it commits).
    compact_log: Option<Vec<u64>>,
    /// The `.dat` file reopened with O_DIRECT for cold reads (opened on first use).
    direct: Option<Arc<File>>,
    /// Cookies of assigned keys `pending_base..` not written yet (`None`: written, or a key
    /// never assigned in this run). At most [`MAX_PENDING`] entries.
    pending: VecDeque<Option<u32>>,
    /// Key of `pending[0]`.
    pending_base: u64,
}

impl State {
    /// Applies a settled needle to the index and the counters; newest offset wins.
    fn apply(&mut self, key: u64, offset: u64, len: u32, tombstone: bool) {
        let units = offset_units(offset);
        let prev = self.index.get(key);
        if let Some(p) = prev {
            if p.offset >= units {
                // An older needle settling after a newer one: it is garbage already.
                if !tombstone {
                    self.deleted_needles += 1;
                }
                return;
            }
            if !p.is_deleted() {
                self.live_needles -= 1;
                self.live_bytes -= p.byte_len() as u64;
                self.deleted_needles += 1;
            }
        }
        if tombstone {
            self.index.put(Entry {
                key,
                offset: units,
                len: len | DELETED,
            });
        } else {
            self.index.put(Entry {
                key,
                offset: units,
                len,
            });
            self.live_needles += 1;
            self.live_bytes += len as u64;
        }
        self.max_key = self.max_key.max(key);
        if let Some(log) = &mut self.compact_log {
            log.push(key);
        }
    }

    /// The cookie an assigned, not yet written key was handed out with.
    fn pending_cookie(&self, key: u64) -> Option<u32> {
        let i = usize::try_from(key.checked_sub(self.pending_base)?).ok()?;
        self.pending.get(i).copied().flatten()
    }

    /// Remembers an assignment (`key` larger than every key assigned before).
    fn add_pending(&mut self, key: u64, cookie: u32) {
        let next = self.pending_base + self.pending.len() as u64;
        if self.pending.is_empty() || key < next || key - next > MAX_PENDING as u64 {
            self.pending.clear();
            self.pending_base = key;
        } else {
            for _ in next..key {
                self.pending.push_back(None);
            }
        }
        self.pending.push_back(Some(cookie));
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
            self.pending_base += 1;
        }
    }

    /// Forgets the assignment of `key` once its first write settled.
    fn consume_pending(&mut self, key: u64) {
        let Some(i) = key
            .checked_sub(self.pending_base)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        if let Some(slot) = self.pending.get_mut(i) {
            *slot = None;
        }
        while self.pending.front().is_some_and(|c| c.is_none()) {
            self.pending.pop_front();
            self.pending_base += 1;
        }
    }

    /// Marks the needle at `offset` settled and emits every record now contiguous.
    fn settle(&mut self, offset: u64, len: u64, rec: Option<[u8; IDX_RECORD_LEN]>) {
        self.idx_waiting.insert(offset, (len, rec));
        while let Some((len, rec)) = self.idx_waiting.remove(&self.idx_cursor) {
            if let Some(r) = rec {
                self.idx_buf.extend_from_slice(&r);
            }
            self.idx_cursor += len;
        }
    }
}

/// A volume offset in the index's 32-bit count of 8-byte units.
// Needles lie below MAX_VOLUME_SIZE = u32::MAX * 8 bytes (writes stop at `max_size`, at most
// MAX_VOLUME_SIZE), so offset / 8 fits a u32 (limits.rs asserts the relation).
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn offset_units(offset: u64) -> u32 {
    (offset / 8) as u32
}

/// A needle's total length as the index's u32.
// A needle is at most MAX_NEEDLE_LEN bytes (checked when it is encoded and when a header is
// parsed), which leaves bit 31 free (limits.rs asserts it), so the length fits.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn needle_len32(len: u64) -> u32 {
    len as u32
}

fn idx_record(key: u64, offset: u64, len: u32, tombstone: bool) -> [u8; IDX_RECORD_LEN] {
    let mut r = [0u8; IDX_RECORD_LEN];
    r[..8].copy_from_slice(&key.to_le_bytes());
    r[8..12].copy_from_slice(&offset_units(offset).to_le_bytes());
    let l = if tombstone { len | IDX_TOMBSTONE } else { len };
    r[12..16].copy_from_slice(&l.to_le_bytes());
    r
}

fn parse_record(r: &[u8]) -> (u64, u64, u32, bool) {
    let mut k = [0u8; 8];
    k.copy_from_slice(&r[..8]);
    let off = u32::from_le_bytes([r[8], r[9], r[10], r[11]]) as u64 * 8;
    let l = u32::from_le_bytes([r[12], r[13], r[14], r[15]]);
    (
        u64::from_le_bytes(k),
        off,
        l & !IDX_TOMBSTONE,
        l & IDX_TOMBSTONE != 0,
    )
}

fn superblock(id: u32, revision: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(crate::usize_from(SB_LEN));
    b.extend_from_slice(VOLUME_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&revision.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    b.extend_from_slice(&now.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// Parses a superblock, returning (volume id, revision).
pub fn parse_superblock(b: &[u8]) -> Result<(u32, u32), String> {
    if b.len() < crate::usize_from(SB_LEN) {
        return Err(format!("file shorter than the {SB_LEN}-byte superblock"));
    }
    if &b[..8] != VOLUME_MAGIC {
        return Err("bad magic".into());
    }
    let crc = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
    if crc32c::crc32c(&b[..32]) != crc {
        return Err("superblock CRC mismatch".into());
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    let id = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    let rev = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
    Ok((id, rev))
}

fn idx_header(id: u32, revision: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(IDX_HEADER_LEN);
    b.extend_from_slice(IDX_MAGIC);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&revision.to_le_bytes());
    b
}

/// Paths of a volume's files.
#[derive(Debug, Clone)]
pub struct VolumePaths {
    /// `ID.dat`: the needles.
    pub dat: PathBuf,
    /// `ID.idx`: the index records.
    pub idx: PathBuf,
    /// `ID.cpd`: compacted data being written.
    pub cpd: PathBuf,
    /// `ID.cpx`: compacted index being written.
    pub cpx: PathBuf,
    /// `ID.cpm`: compaction commit marker.
    pub marker: PathBuf,
}

impl VolumePaths {
    /// Paths of volume `id` under `dir`.
    pub fn new(dir: &Path, id: u32) -> Self {
        let p = |ext: &str| dir.join(format!("{id}.{ext}"));
        VolumePaths {
            dat: p("dat"),
            idx: p("idx"),
            cpd: p("cpd"),
            cpx: p("cpx"),
            marker: p("cpm"),
        }
    }
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::File { what, path, source }
}

fn open_rw(path: &Path, create: bool) -> Result<File, VolumeError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .open(path)
        .map_err(file_err("open", path))
}

/// fsyncs a directory so renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), VolumeError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_err("fsync dir", dir))
}

type CommitReq = (Arc<File>, oneshot::Sender<Result<(), String>>);

/// A volume.
pub struct Volume {
    id: u32,
    dir: PathBuf,
    io: IoService,
    cfg: VolumeConfig,
    state: Mutex<State>,
    /// Writers hold it shared; the compaction commit holds it exclusively.
    gate: tokio::sync::RwLock<()>,
    commit_tx: mpsc::UnboundedSender<CommitReq>,
    flush_now: Notify,
    /// Serialises `.idx` appends.
    flush_lock: tokio::sync::Mutex<()>,
    compacting: AtomicBool,
    closed: AtomicBool,
    recovery: RecoveryReport,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume").field("id", &self.id).finish()
    }
}

impl Volume {
    /// Creates a new, empty volume `id` in `dir` (fails if its file exists).
    pub async fn create(
        dir: &Path,
        id: u32,
        io: IoService,
        cfg: VolumeConfig,
    ) -> Result<Arc<Volume>, VolumeError> {
        let p = VolumePaths::new(dir, id);
        let dat = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p.dat)
            .map_err(file_err("create", &p.dat))?;
        let dat = Arc::new(dat);
        io.write_at(&dat, 0, superblock(id, 0))
            .await
            .map_err(|source| VolumeError::Io { volume: id, source })?;
        io.fsync(&dat)
            .await
            .map_err(|source| VolumeError::Io { volume: id, source })?;
        let idx = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p.idx)
                .map_err(file_err("create", &p.idx))?,
        );
        io.write_at(&idx, 0, idx_header(id, 0))
            .await
            .map_err(|source| VolumeError::Io { volume: id, source })?;
        sync_dir(dir)?;
        drop((dat, idx));
        Self::open(dir, id, io, cfg).await
    }

    /// Opens volume `id`, running start-up recovery (index tail check, orphan scan, torn
    /// tail cut, `.idx` rebuild when missing or corrupt). A bad superblock is an error and
    /// leaves the files untouched.
    pub async fn open(
        dir: &Path,
        id: u32,
        io: IoService,
        cfg: VolumeConfig,
    ) -> Result<Arc<Volume>, VolumeError> {
        let p = VolumePaths::new(dir, id);
        let ioe = |source| VolumeError::Io { volume: id, source };
        let dat = Arc::new(open_rw(&p.dat, false)?);
        let sb = io
            .read_at(&dat, 0, crate::usize_from(SB_LEN))
            .await
            .map_err(ioe)?;
        let (sb_id, revision) =
            parse_superblock(&sb).map_err(|e| VolumeError::BadSuperblock(p.dat.clone(), e))?;
        if sb_id != id {
            return Err(VolumeError::BadSuperblock(
                p.dat.clone(),
                format!("superblock names volume {sb_id}"),
            ));
        }
        let idx = Arc::new(open_rw(&p.idx, true)?);
        let idx_len = idx.metadata().map_err(file_err("stat", &p.idx))?.len();
        let idx_bytes = io
            .read_at(&idx, 0, crate::usize_from(idx_len))
            .await
            .map_err(ioe)?;

        let mut st = State {
            dat: dat.clone(),
            idx: idx.clone(),
            revision,
            end: SB_LEN,
            index: CompactIndex::new(),
            max_key: 0,
            live_needles: 0,
            live_bytes: 0,
            deleted_needles: 0,
            read_only: None,
            idx_cursor: SB_LEN,
            idx_waiting: BTreeMap::new(),
            idx_buf: Vec::new(),
            idx_end: IDX_HEADER_LEN as u64,
            compact_log: None,
            direct: None,
            pending: VecDeque::new(),
            pending_base: 0,
        };
        let recovery = recover(id, &io, &mut st, &idx_bytes, &p).await?;
        if cfg.max_size <= st.end {
            st.read_only = Some("full".into());
        }
        let (commit_tx, commit_rx) = mpsc::unbounded_channel();
        aergo_os::task::spawn_vital("volume committer", committer(io.clone(), commit_rx));
        let vol = Arc::new(Volume {
            id,
            dir: dir.to_path_buf(),
            io,
            cfg: VolumeConfig {
                max_size: cfg.max_size.min(MAX_VOLUME_SIZE),
                ..cfg
            },
            state: Mutex::new(st),
            gate: tokio::sync::RwLock::new(()),
            commit_tx,
            flush_now: Notify::new(),
            flush_lock: tokio::sync::Mutex::new(()),
            compacting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            recovery,
        });
        // Write out records recovered by the orphan scan or a rebuild right away.
        vol.flush_index(true).await?;
        aergo_os::task::spawn_vital("volume index flusher", flusher(Arc::downgrade(&vol)));
        Ok(vol)
    }

    /// Volume id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What start-up recovery did.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Assigns a fresh key (larger than every key the volume has seen or assigned) and a
    /// random cookie, and remembers them: the key's first write must come with that cookie.
    /// Refused once the keys reach [`MAX_ASSIGNED_KEY`] (never wraps).
    pub fn assign(&self) -> Result<(u64, u32), VolumeError> {
        let mut st = self.state.lock();
        if st.max_key >= MAX_ASSIGNED_KEY {
            return Err(VolumeError::KeysExhausted(self.id));
        }
        st.max_key += 1;
        let key = st.max_key;
        let cookie = rand::random::<u32>();
        st.add_pending(key, cookie);
        Ok((key, cookie))
    }

    /// Offset and length of the live needle of `key`, if any.
    pub fn locate(&self, key: u64) -> Option<(u64, u32)> {
        let st = self.state.lock();
        st.index
            .get(key)
            .filter(|e| !e.is_deleted())
            .map(|e| (e.byte_offset(), e.byte_len()))
    }

    /// Whether a needle of `len` bytes fits; if not, the volume is full (read-only).
    pub fn has_room(&self, len: u64) -> bool {
        let mut st = self.state.lock();
        if st.end + len > self.cfg.max_size {
            if st.read_only.is_none() {
                st.read_only = Some("full".into());
            }
            return false;
        }
        true
    }

    /// Whether the volume takes new files: writable, with keys left to assign.
    pub fn is_writable(&self) -> bool {
        let st = self.state.lock();
        st.read_only.is_none() && st.max_key < MAX_ASSIGNED_KEY
    }

    /// Current statistics.
    pub fn stats(&self) -> VolumeStats {
        let st = self.state.lock();
        let body = st.end.saturating_sub(SB_LEN);
        let garbage = body.saturating_sub(st.live_bytes);
        VolumeStats {
            id: self.id,
            size: st.end,
            live_needles: st.live_needles,
            live_bytes: st.live_bytes,
            deleted_needles: st.deleted_needles,
            garbage_bytes: garbage,
            garbage_ratio: if body == 0 {
                0.0
            } else {
                garbage as f64 / body as f64
            },
            read_only: st.read_only.is_some(),
            read_only_reason: st.read_only.clone(),
            revision: st.revision,
            compacting: self.compacting.load(Ordering::Relaxed),
            index_bytes: st.index.memory_bytes() as u64,
            index_entries: st.index.len() as u64,
        }
    }

    fn ioe(&self) -> impl Fn(IoError) -> VolumeError + '_ {
        move |source| VolumeError::Io {
            volume: self.id,
            source,
        }
    }

    /// Flushes and fsyncs the index and the data (graceful shutdown).
    pub async fn close(&self) -> Result<(), VolumeError> {
        self.closed.store(true, Ordering::SeqCst);
        let _gate = self.gate.write().await;
        self.flush_index(true).await?;
        let dat = self.state.lock().dat.clone();
        self.io.fsync(&dat).await.map_err(self.ioe())?;
        Ok(())
    }
}
