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

use crate::index::{CompactIndex, Entry, DELETED};
use crate::needle::{
    self, Header, Meta, Needle, NeedleBuf, NeedleError, HEADER_LEN, MIN_NEEDLE_LEN,
};
use aergo_os::io::{IoError, IoService};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

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
/// Largest volume size the 32-bit offsets (in 8-byte units) can address.
pub const MAX_VOLUME_SIZE: u64 = (u32::MAX as u64) * 8;
/// Largest key a volume assigns (keys stay in the index's dense 32-bit slots); a volume
/// whose keys reach it assigns no more, and the store moves on to another volume.
pub const MAX_ASSIGNED_KEY: u64 = u32::MAX as u64;
/// Assignments remembered per volume until their first write (older ones are forgotten, and
/// a first write to a forgotten assignment is refused).
pub const MAX_PENDING: usize = 1 << 20;

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
            max_size: 30 << 30,
            durability: Durability::GroupCommit,
            compaction_rate: 64 << 20,
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
        let units = (offset / 8) as u32;
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

fn idx_record(key: u64, offset: u64, len: u32, tombstone: bool) -> [u8; IDX_RECORD_LEN] {
    let mut r = [0u8; IDX_RECORD_LEN];
    r[..8].copy_from_slice(&key.to_le_bytes());
    r[8..12].copy_from_slice(&((offset / 8) as u32).to_le_bytes());
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
    let mut b = Vec::with_capacity(SB_LEN as usize);
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
    if b.len() < SB_LEN as usize {
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

/// Finishes or undoes an interrupted compaction of volume `id` (see FORMAT.md): with a
/// marker the compacted files are complete and are renamed into place; without one they are
/// deleted. Returns what was done, if anything.
pub fn resolve_compaction(dir: &Path, id: u32) -> Result<Option<&'static str>, VolumeError> {
    let p = VolumePaths::new(dir, id);
    if p.marker.exists() {
        if p.cpd.exists() {
            std::fs::rename(&p.cpd, &p.dat).map_err(file_err("rename", &p.cpd))?;
        }
        if p.cpx.exists() {
            std::fs::rename(&p.cpx, &p.idx).map_err(file_err("rename", &p.cpx))?;
        }
        sync_dir(dir)?;
        std::fs::remove_file(&p.marker).map_err(file_err("remove", &p.marker))?;
        sync_dir(dir)?;
        return Ok(Some("rolled forward"));
    }
    let mut did = None;
    for f in [&p.cpd, &p.cpx] {
        if f.exists() {
            std::fs::remove_file(f).map_err(file_err("remove", f))?;
            did = Some("rolled back");
        }
    }
    if did.is_some() {
        sync_dir(dir)?;
    }
    Ok(did)
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
        let sb = io.read_at(&dat, 0, SB_LEN as usize).await.map_err(ioe)?;
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
        let idx_bytes = io.read_at(&idx, 0, idx_len as usize).await.map_err(ioe)?;

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
        tokio::spawn(committer(io.clone(), commit_rx));
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
        tokio::spawn(flusher(Arc::downgrade(&vol)));
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

    /// Checks that `cookie` may write (`tombstone`: delete) `key` — FORMAT.md "Writes and
    /// deletes": an existing live file only with its own cookie; a new key only if this
    /// volume assigned it with this cookie and it was never written; a deleted key never.
    /// Called with the gate held, so the index entry's offset is valid in `st.dat`.
    async fn authorize(&self, key: u64, cookie: u32, tombstone: bool) -> Result<(), VolumeError> {
        let refused = || {
            if tombstone {
                VolumeError::NotFound
            } else {
                VolumeError::WriteRefused
            }
        };
        let (dat, e, pending) = {
            let st = self.state.lock();
            (st.dat.clone(), st.index.get(key), st.pending_cookie(key))
        };
        match e {
            Some(e) if !e.is_deleted() => {
                let head = self
                    .io
                    .read_at(&dat, e.byte_offset(), HEADER_LEN)
                    .await
                    .map_err(self.ioe())?;
                match Header::parse(&head) {
                    Ok(h) if h.key == key && h.cookie == cookie => Ok(()),
                    Ok(h) if h.key == key => Err(refused()),
                    // Damaged header: the cookie cannot be checked; refuse rather than guess.
                    Ok(_) | Err(_) => Err(VolumeError::Corrupt {
                        volume: self.id,
                        key,
                        detail: "needle header unreadable".into(),
                    }),
                }
            }
            Some(_) => Err(refused()),
            None if !tombstone && pending == Some(cookie) => Ok(()),
            None => Err(refused()),
        }
    }

    /// Whether a write of `key` with `cookie` would be accepted now (the write checks again).
    pub async fn check_write(&self, key: u64, cookie: u32) -> Result<(), VolumeError> {
        let _gate = self.gate.read().await;
        self.authorize(key, cookie, false).await
    }

    /// Appends a needle (data or tombstone) and acknowledges per the durability mode.
    async fn append(
        &self,
        key: u64,
        cookie: u32,
        data: NeedleBuf,
        meta: &Meta,
        tombstone: bool,
    ) -> Result<WriteInfo, VolumeError> {
        let bytes = data.seal(key, cookie, meta, tombstone)?;
        let crc = needle::footer_crc(&bytes).unwrap_or(0);
        let len = bytes.len() as u64;
        let _gate = self.gate.read().await;
        self.authorize(key, cookie, tombstone).await?;
        let (dat, offset) = {
            let mut st = self.state.lock();
            if let Some(r) = &st.read_only {
                return Err(VolumeError::ReadOnly(self.id, r.clone()));
            }
            if st.end + len > self.cfg.max_size {
                st.read_only = Some("full".into());
                return Err(VolumeError::ReadOnly(self.id, "full".into()));
            }
            let off = st.end;
            st.end += len;
            (st.dat.clone(), off)
        };
        let mut result = self
            .io
            .write_at(&dat, offset, bytes)
            .await
            .map_err(self.ioe());
        if result.is_ok() && self.cfg.durability == Durability::GroupCommit {
            result = self.commit(dat).await;
        }
        let mut st = self.state.lock();
        match result {
            Ok(()) => {
                st.apply(key, offset, len as u32, tombstone);
                st.consume_pending(key);
                st.settle(
                    offset,
                    len,
                    Some(idx_record(key, offset, len as u32, tombstone)),
                );
                let big = st.idx_buf.len() >= 256 << 10;
                drop(st);
                if big {
                    self.flush_now.notify_one();
                }
                Ok(WriteInfo {
                    offset,
                    len: len as u32,
                    crc,
                })
            }
            Err(e) => {
                // The bytes may or may not be on disk: stop writing to this volume; the
                // start-up scan decides what is really there.
                tracing::error!(volume = self.id, offset, error = %e, "write failed; volume now read-only");
                st.read_only = Some(format!("write error: {e}"));
                st.settle(offset, len, None);
                Err(e)
            }
        }
    }

    async fn commit(&self, dat: Arc<File>) -> Result<(), VolumeError> {
        let (tx, rx) = oneshot::channel();
        self.commit_tx
            .send((dat, tx))
            .map_err(|_| VolumeError::Sync(self.id, "committer stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(VolumeError::Sync(self.id, e)),
            Err(_) => Err(VolumeError::Sync(self.id, "committer stopped".into())),
        }
    }

    /// Stores `data` under `key` with `cookie`; the newest needle of a key wins. Refused
    /// ([`VolumeError::WriteRefused`], nothing written) unless `key` holds a live file with
    /// this cookie or was assigned by [`Volume::assign`] with it and not written since.
    pub async fn write(
        &self,
        key: u64,
        cookie: u32,
        data: &[u8],
        meta: &Meta,
    ) -> Result<WriteInfo, VolumeError> {
        if data.len() > needle::MAX_DATA_LEN {
            return Err(NeedleError::TooLong("data").into());
        }
        self.append(key, cookie, NeedleBuf::from_data(data), meta, false)
            .await
    }

    /// [`Volume::write`] of data already in a needle buffer (no copy).
    pub async fn write_buf(
        &self,
        key: u64,
        cookie: u32,
        data: NeedleBuf,
        meta: &Meta,
    ) -> Result<WriteInfo, VolumeError> {
        self.append(key, cookie, data, meta, false).await
    }

    /// Reads and verifies the needle of `key` in one positioned read.
    pub async fn read(&self, key: u64, cookie: u32) -> Result<Needle, VolumeError> {
        let (dat, e) = {
            let st = self.state.lock();
            match st.index.get(key) {
                Some(e) if !e.is_deleted() => (st.dat.clone(), e),
                _ => return Err(VolumeError::NotFound),
            }
        };
        let buf = self
            .io
            .read_at(&dat, e.byte_offset(), e.byte_len() as usize)
            .await
            .map_err(self.ioe())?;
        self.check_needle(key, cookie, e, buf)
    }

    /// Like [`Volume::read`], but bypassing the page cache: one O_DIRECT read of the
    /// 4 KiB-aligned window holding the needle (used by the cold-read benchmark).
    pub async fn read_direct(&self, key: u64, cookie: u32) -> Result<Needle, VolumeError> {
        let (file, e, start, len) = self.direct_window(key)?;
        let win = self
            .io
            .read_direct(&file, start, len)
            .await
            .map_err(self.ioe())?;
        self.cut_window(key, cookie, e, start, &win)
    }

    /// Blocking form of [`Volume::read_direct`] for sync callers (not on a runtime worker).
    pub fn read_direct_blocking(&self, key: u64, cookie: u32) -> Result<Needle, VolumeError> {
        let (file, e, start, len) = self.direct_window(key)?;
        let win = self
            .io
            .read_direct_blocking(&file, start, len)
            .map_err(self.ioe())?;
        self.cut_window(key, cookie, e, start, &win)
    }

    fn cut_window(
        &self,
        key: u64,
        cookie: u32,
        e: Entry,
        start: u64,
        win: &[u8],
    ) -> Result<Needle, VolumeError> {
        let from = (e.byte_offset() - start) as usize;
        let to = (from + e.byte_len() as usize).min(win.len());
        self.check_needle(key, cookie, e, win.get(from..to).unwrap_or(&[]).to_vec())
    }

    /// The O_DIRECT file and the aligned window holding the needle of `key`.
    fn direct_window(&self, key: u64) -> Result<(Arc<File>, Entry, u64, usize), VolumeError> {
        use aergo_os::io::DIRECT_ALIGN;
        use std::os::unix::fs::OpenOptionsExt;
        let (file, e) = {
            let mut st = self.state.lock();
            let e = match st.index.get(key) {
                Some(e) if !e.is_deleted() => e,
                _ => return Err(VolumeError::NotFound),
            };
            if st.direct.is_none() {
                // Reopen the very inode we write (not the path, which compaction renames).
                use std::os::fd::AsRawFd;
                let proc_path = PathBuf::from(format!("/proc/self/fd/{}", st.dat.as_raw_fd()));
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&proc_path)
                    .map_err(file_err("open O_DIRECT", &proc_path))?;
                st.direct = Some(Arc::new(f));
            }
            match &st.direct {
                Some(f) => (f.clone(), e),
                None => return Err(VolumeError::NotFound),
            }
        };
        let a = DIRECT_ALIGN as u64;
        let start = e.byte_offset() / a * a;
        let end = (e.byte_offset() + e.byte_len() as u64).div_ceil(a) * a;
        Ok((file, e, start, (end - start) as usize))
    }

    fn check_needle(
        &self,
        key: u64,
        cookie: u32,
        e: Entry,
        buf: Vec<u8>,
    ) -> Result<Needle, VolumeError> {
        let corrupt = |detail: String| VolumeError::Corrupt {
            volume: self.id,
            key,
            detail,
        };
        let n = Needle::decode(buf).map_err(|err| corrupt(err.to_string()))?;
        if n.header.key != key
            || n.header.is_tombstone()
            || n.header.total_len() != e.byte_len() as usize
        {
            return Err(corrupt(format!(
                "index points to needle of key {:x} (tombstone {})",
                n.header.key,
                n.header.is_tombstone()
            )));
        }
        if n.header.cookie != cookie {
            return Err(VolumeError::NotFound);
        }
        Ok(n)
    }

    /// Deletes `key` (cookie must match) by appending a tombstone. Returns the freed size.
    pub async fn delete(&self, key: u64, cookie: u32) -> Result<u32, VolumeError> {
        let size = {
            let st = self.state.lock();
            match st.index.get(key) {
                Some(e) if !e.is_deleted() => e.byte_len(),
                _ => return Err(VolumeError::NotFound),
            }
        };
        // The cookie is checked against the stored needle under the gate (`authorize`).
        self.append(key, cookie, NeedleBuf::default(), &Meta::default(), true)
            .await?;
        Ok(size)
    }

    /// Appends pending index records to `.idx`; with `sync`, fsyncs it too.
    pub async fn flush_index(&self, sync: bool) -> Result<(), VolumeError> {
        let _l = self.flush_lock.lock().await;
        let (idx, buf, off) = {
            let mut st = self.state.lock();
            let buf = std::mem::take(&mut st.idx_buf);
            let off = st.idx_end;
            st.idx_end += buf.len() as u64;
            (st.idx.clone(), buf, off)
        };
        let wrote = !buf.is_empty();
        if wrote {
            self.io.write_at(&idx, off, buf).await.map_err(self.ioe())?;
        }
        if sync && wrote {
            self.io.fsync(&idx).await.map_err(self.ioe())?;
        }
        Ok(())
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

    /// Compacts the volume: copies live needles to `ID.cpd` while writes continue, replays
    /// what changed meanwhile, then commits with a marker file and atomic renames.
    pub async fn compact(&self) -> Result<CompactReport, VolumeError> {
        if self.compacting.swap(true, Ordering::SeqCst) {
            return Err(VolumeError::AlreadyCompacting(self.id));
        }
        let p = VolumePaths::new(&self.dir, self.id);
        let r = self.compact_inner(&p).await;
        if let Err(e) = &r {
            let mut st = self.state.lock();
            st.compact_log = None;
            if p.marker.exists() {
                // Committed on disk but not in memory: writes here could land in a replaced
                // file. Refuse them until a restart rolls the compaction forward.
                st.read_only = Some(format!(
                    "compaction commit failed ({e}); restart to finish it"
                ));
            }
            drop(st);
            for f in [&p.cpd, &p.cpx] {
                if f.exists() && !p.marker.exists() {
                    let _ = std::fs::remove_file(f);
                }
            }
        }
        self.compacting.store(false, Ordering::SeqCst);
        r
    }

    async fn compact_inner(&self, p: &VolumePaths) -> Result<CompactReport, VolumeError> {
        let started = Instant::now();
        let (old_dat, revision, before, mut live) = {
            let mut st = self.state.lock();
            st.compact_log = Some(Vec::new());
            let live: Vec<Entry> = st.index.iter().filter(|e| !e.is_deleted()).collect();
            (st.dat.clone(), st.revision, st.end, live)
        };
        live.sort_by_key(|e| e.offset);
        let new_rev = revision.wrapping_add(1);
        let cpd = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p.cpd)
                .map_err(file_err("create", &p.cpd))?,
        );
        self.io
            .write_at(&cpd, 0, superblock(self.id, new_rev))
            .await
            .map_err(self.ioe())?;
        let mut copier = Copier {
            vol: self,
            src: old_dat.clone(),
            dst: cpd.clone(),
            end: SB_LEN,
            out: Vec::new(),
            map: BTreeMap::new(),
            copied: 0,
            bytes: 0,
            started: Instant::now(),
        };
        copier.copy_runs(&live).await?;
        // Replay what changed during the copy, in rounds, while writes continue.
        let mut replayed = 0u64;
        for _ in 0..8 {
            let keys = {
                let mut st = self.state.lock();
                st.compact_log.replace(Vec::new()).unwrap_or_default()
            };
            if keys.len() < 64 {
                let mut st = self.state.lock();
                if let Some(log) = &mut st.compact_log {
                    log.extend(keys);
                }
                break;
            }
            replayed += copier.replay(keys).await?;
        }
        // Commit: stop writers (in-flight ones finish first), replay the rest, swap.
        let _gate = self.gate.write().await;
        let keys = {
            let mut st = self.state.lock();
            st.compact_log.replace(Vec::new()).unwrap_or_default()
        };
        replayed += copier.replay(keys).await?;
        copier.flush().await?;
        let mut new_end = copier.end;
        let copied = copier.copied;
        let map = std::mem::take(&mut copier.map);
        // Keep the key high-water mark: when the largest key assigned so far has no live
        // needle (deleted, or assigned and not written), a tombstone of it goes last, so
        // recovery never hands out a key again (FORMAT.md "Key assignment").
        let high = self.state.lock().max_key;
        let mut high_mark = None;
        if high > 0 && !map.contains_key(&high) {
            let t = needle::encode(high, 0, &[], &Meta::default(), true)?;
            let len = t.len() as u32;
            self.io
                .write_at(&cpd, new_end, t)
                .await
                .map_err(self.ioe())?;
            high_mark = Some((new_end, len));
            new_end += len as u64;
        }
        // Build the new index file.
        let mut idx_bytes = idx_header(self.id, new_rev);
        let mut by_offset: Vec<(u64, u64, u32)> =
            map.iter().map(|(&k, &(off, len))| (off, k, len)).collect();
        by_offset.sort_unstable();
        for &(off, k, len) in &by_offset {
            idx_bytes.extend_from_slice(&idx_record(k, off, len, false));
        }
        if let Some((off, len)) = high_mark {
            idx_bytes.extend_from_slice(&idx_record(high, off, len, true));
        }
        let idx_len = idx_bytes.len() as u64;
        let cpx = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p.cpx)
                .map_err(file_err("create", &p.cpx))?,
        );
        self.io
            .write_at(&cpx, 0, idx_bytes)
            .await
            .map_err(self.ioe())?;
        self.io.fsync(&cpd).await.map_err(self.ioe())?;
        self.io.fsync(&cpx).await.map_err(self.ioe())?;
        sync_dir(&self.dir)?;
        crate::failpoint("compact-before-marker");
        std::fs::write(&p.marker, new_rev.to_le_bytes()).map_err(file_err("write", &p.marker))?;
        File::open(&p.marker)
            .and_then(|f| f.sync_all())
            .map_err(file_err("fsync", &p.marker))?;
        sync_dir(&self.dir)?;
        crate::failpoint("compact-after-marker");
        std::fs::rename(&p.cpd, &p.dat).map_err(file_err("rename", &p.cpd))?;
        crate::failpoint("compact-between-renames");
        std::fs::rename(&p.cpx, &p.idx).map_err(file_err("rename", &p.cpx))?;
        sync_dir(&self.dir)?;
        std::fs::remove_file(&p.marker).map_err(file_err("remove", &p.marker))?;
        sync_dir(&self.dir)?;
        {
            let mut st = self.state.lock();
            let mut index = CompactIndex::new();
            let mut live_bytes = 0u64;
            for (&k, &(off, len)) in &map {
                index.put(Entry {
                    key: k,
                    offset: (off / 8) as u32,
                    len,
                });
                live_bytes += len as u64;
            }
            if let Some((off, len)) = high_mark {
                index.put(Entry {
                    key: high,
                    offset: (off / 8) as u32,
                    len: len | DELETED,
                });
            }
            st.dat = cpd;
            st.idx = cpx;
            st.direct = None;
            st.revision = new_rev;
            st.end = new_end;
            st.index = index;
            st.live_needles = map.len() as u64;
            st.live_bytes = live_bytes;
            st.deleted_needles = 0;
            st.idx_cursor = new_end;
            st.idx_waiting.clear();
            st.idx_buf.clear();
            st.idx_end = idx_len;
            st.compact_log = None;
            if st.read_only.as_deref() == Some("full") && new_end < self.cfg.max_size {
                st.read_only = None;
            }
        }
        let report = CompactReport {
            volume: self.id,
            before,
            after: new_end,
            copied,
            replayed,
            millis: started.elapsed().as_millis() as u64,
        };
        tracing::info!(?report, "compaction committed");
        Ok(report)
    }
}

/// Copies needles from the old volume file to the compacted one.
struct Copier<'a> {
    vol: &'a Volume,
    src: Arc<File>,
    dst: Arc<File>,
    /// Append offset in the new file (including bytes still in `out`).
    end: u64,
    out: Vec<u8>,
    /// key → (new offset, length).
    map: BTreeMap<u64, (u64, u32)>,
    copied: u64,
    bytes: u64,
    started: Instant,
}

const COPY_WINDOW: u64 = 1 << 20;

impl Copier<'_> {
    /// Copies live needles (sorted by offset), reading runs of neighbours with one read.
    async fn copy_runs(&mut self, live: &[Entry]) -> Result<(), VolumeError> {
        let mut i = 0;
        while i < live.len() {
            let start = live[i].byte_offset();
            let mut j = i;
            let mut stop = start;
            while j < live.len() {
                let e = live[j];
                let e_end = e.byte_offset() + e.byte_len() as u64;
                if j > i && e_end - start > COPY_WINDOW {
                    break;
                }
                stop = e_end;
                j += 1;
            }
            let buf = self
                .vol
                .io
                .read_at(&self.src, start, (stop - start) as usize)
                .await
                .map_err(self.vol.ioe())?;
            for e in &live[i..j] {
                let a = (e.byte_offset() - start) as usize;
                let b = a + e.byte_len() as usize;
                if b > buf.len() {
                    return Err(VolumeError::Corrupt {
                        volume: self.vol.id,
                        key: e.key,
                        detail: "needle extends past end of volume".into(),
                    });
                }
                self.put(e.key, &buf[a..b]).await?;
            }
            i = j;
        }
        Ok(())
    }

    /// Copies the current state of each changed key.
    async fn replay(&mut self, mut keys: Vec<u64>) -> Result<u64, VolumeError> {
        keys.sort_unstable();
        keys.dedup();
        let mut n = 0;
        for key in keys {
            let (src, e) = {
                let st = self.vol.state.lock();
                (st.dat.clone(), st.index.get(key))
            };
            match e {
                Some(e) if !e.is_deleted() => {
                    let buf = self
                        .vol
                        .io
                        .read_at(&src, e.byte_offset(), e.byte_len() as usize)
                        .await
                        .map_err(self.vol.ioe())?;
                    self.put(key, &buf).await?;
                    n += 1;
                }
                _ => {
                    self.map.remove(&key);
                }
            }
        }
        Ok(n)
    }

    async fn put(&mut self, key: u64, needle: &[u8]) -> Result<(), VolumeError> {
        self.map.insert(key, (self.end, needle.len() as u32));
        self.out.extend_from_slice(needle);
        self.end += needle.len() as u64;
        self.copied += 1;
        if self.out.len() as u64 >= COPY_WINDOW {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), VolumeError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out);
        let len = buf.len() as u64;
        let off = self.end - len;
        self.vol
            .io
            .write_at(&self.dst, off, buf)
            .await
            .map_err(self.vol.ioe())?;
        self.bytes += len;
        // Rate limit: stay at or below compaction_rate bytes per second.
        let rate = self.vol.cfg.compaction_rate;
        if rate > 0 {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            let spent = self.started.elapsed();
            if due > spent {
                tokio::time::sleep(due - spent).await;
            }
        }
        Ok(())
    }
}

/// Group commit: one fdatasync for every request queued while the previous one ran.
async fn committer(io: IoService, mut rx: mpsc::UnboundedReceiver<CommitReq>) {
    // Up to COMMIT_PIPELINE fsyncs run at once: a batch that forms while one is running does
    // not wait for it to finish. Every fsync starts after all writes of its batch completed.
    let slots = Arc::new(tokio::sync::Semaphore::new(COMMIT_PIPELINE));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let io = io.clone();
        tokio::spawn(async move {
            let mut files: Vec<Arc<File>> = Vec::new();
            for (f, _) in &batch {
                if !files.iter().any(|g| Arc::ptr_eq(f, g)) {
                    files.push(f.clone());
                }
            }
            let mut result = Ok(());
            for f in &files {
                if let Err(e) = io.fsync(f).await {
                    result = Err(e.to_string());
                }
            }
            drop(permit);
            for (_, tx) in batch {
                let _ = tx.send(result.clone());
            }
        });
    }
}

/// Group-commit fsyncs allowed in flight at once.
const COMMIT_PIPELINE: usize = 2;

/// Appends index records to `.idx` every second (sooner when many are pending) and fsyncs it.
async fn flusher(vol: Weak<Volume>) {
    loop {
        let Some(v) = vol.upgrade() else { return };
        if v.closed.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = v.flush_index(true).await {
            tracing::error!(volume = v.id, error = %e, "index flush failed");
        }
        tokio::select! {
            _ = v.flush_now.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // `v` is dropped here: if the store let go of the volume, the next upgrade fails.
    }
}

/// Start-up recovery (see FORMAT.md "Recovery").
async fn recover(
    id: u32,
    io: &IoService,
    st: &mut State,
    idx_bytes: &[u8],
    p: &VolumePaths,
) -> Result<RecoveryReport, VolumeError> {
    let ioe = |source| VolumeError::Io { volume: id, source };
    let mut rep = RecoveryReport::default();
    let file_len = st.dat.metadata().map_err(file_err("stat", &p.dat))?.len();

    // 1. Load and validate the index records.
    let mut records: Vec<(u64, u64, u32, bool)> = Vec::new();
    let mut rebuild: Option<String> = None;
    if idx_bytes.len() < IDX_HEADER_LEN {
        if !idx_bytes.is_empty() || file_len > SB_LEN {
            rebuild = Some("index file missing or shorter than its header".into());
        }
    } else if idx_bytes[..IDX_HEADER_LEN] != idx_header(id, st.revision)[..] {
        rebuild = Some("index header does not match the volume (id or revision)".into());
    } else {
        let body = &idx_bytes[IDX_HEADER_LEN..];
        if !body.len().is_multiple_of(IDX_RECORD_LEN) {
            tracing::warn!(volume = id, "index has a torn last record; ignoring it");
        }
        let mut last_end = SB_LEN;
        for r in body.chunks_exact(IDX_RECORD_LEN) {
            let (key, off, len, tomb) = parse_record(r);
            let ok = off >= last_end
                && len as usize >= MIN_NEEDLE_LEN
                && len.is_multiple_of(8)
                && off + len as u64 <= file_len
                && key != 0;
            if !ok {
                rebuild = Some(format!("index record for offset {off} is invalid"));
                break;
            }
            last_end = off + len as u64;
            records.push((key, off, len, tomb));
        }
    }
    if rebuild.is_none() {
        // 2. Tail check: the last records must point at intact needles of their key.
        let check_from = records.len().saturating_sub(8);
        let mut keep = records.len();
        for (i, &(key, off, len, tomb)) in records.iter().enumerate().skip(check_from) {
            let buf = io.read_at(&st.dat, off, len as usize).await.map_err(ioe)?;
            let good = matches!(Needle::decode(buf), Ok(n) if n.header.key == key
                && n.header.is_tombstone() == tomb && n.header.total_len() == len as usize);
            if !good {
                tracing::warn!(
                    volume = id,
                    offset = off,
                    "index tail record does not match the volume; rescanning from before it"
                );
                keep = i;
                break;
            }
        }
        records.truncate(keep);
    }
    if let Some(why) = &rebuild {
        tracing::warn!(volume = id, reason = %why, "rebuilding index from the volume");
        records.clear();
        rep.idx_rebuilt = Some(why.clone());
    }
    rep.idx_records = records.len() as u64;
    let mut scan_from = SB_LEN;
    for &(key, off, len, tomb) in &records {
        st.apply(key, off, len, tomb);
        scan_from = off + len as u64;
    }
    st.compact_log = None;
    // Index file content to keep: header + validated records.
    let keep_idx = IDX_HEADER_LEN as u64 + (records.len() * IDX_RECORD_LEN) as u64;
    if rebuild.is_some() || idx_bytes.len() as u64 != keep_idx {
        let mut head = idx_header(id, st.revision);
        for &(key, off, len, tomb) in &records {
            head.extend_from_slice(&idx_record(key, off, len, tomb));
        }
        st.idx.set_len(0).map_err(file_err("truncate", &p.idx))?;
        io.write_at(&st.idx, 0, head).await.map_err(ioe)?;
        io.fsync(&st.idx).await.map_err(ioe)?;
    }
    st.idx_end = keep_idx;

    // 3. Orphan scan from the end of the last indexed needle.
    let mut pos = scan_from;
    let dat = st.dat.clone();
    let mut scanner = Scanner::new(io, &dat, file_len);
    while pos < file_len {
        match scanner.needle_at(pos).await.map_err(ioe)? {
            Some(h) => {
                let len = h.total_len() as u64;
                st.apply(h.key, pos, len as u32, h.is_tombstone());
                st.idx_buf
                    .extend_from_slice(&idx_record(h.key, pos, len as u32, h.is_tombstone()));
                rep.orphans += 1;
                pos += len;
            }
            None => match scanner.next_valid(pos + 8).await.map_err(ioe)? {
                Some(next) => {
                    tracing::warn!(
                        volume = id,
                        offset = pos,
                        len = next - pos,
                        "skipping corrupt region in volume"
                    );
                    rep.skipped.push((pos, next - pos));
                    pos = next;
                }
                None => {
                    tracing::warn!(
                        volume = id,
                        offset = pos,
                        bytes = file_len - pos,
                        "cutting torn tail off volume"
                    );
                    rep.torn_bytes = file_len - pos;
                    st.dat.set_len(pos).map_err(file_err("truncate", &p.dat))?;
                    io.fsync(&st.dat).await.map_err(ioe)?;
                    break;
                }
            },
        }
    }
    // `pos` only moves by whole (8-aligned) needles, so it is aligned.
    st.end = pos;
    st.idx_cursor = st.end;
    if rep.orphans > 0 || rep.torn_bytes > 0 || rep.idx_rebuilt.is_some() || !rep.skipped.is_empty()
    {
        tracing::warn!(volume = id, report = ?rep, "volume recovered");
    }
    Ok(rep)
}

/// Reads a volume sequentially in windows to parse needles during recovery.
struct Scanner<'a> {
    io: &'a IoService,
    file: &'a Arc<File>,
    file_len: u64,
    win_off: u64,
    win: Vec<u8>,
}

impl<'a> Scanner<'a> {
    fn new(io: &'a IoService, file: &'a Arc<File>, file_len: u64) -> Self {
        Scanner {
            io,
            file,
            file_len,
            win_off: 0,
            win: Vec::new(),
        }
    }

    /// Bytes `[off, off+len)` (fewer at end of file).
    async fn bytes(&mut self, off: u64, len: usize) -> Result<&[u8], IoError> {
        let have = off >= self.win_off && off + len as u64 <= self.win_off + self.win.len() as u64;
        if !have {
            let want = (len as u64)
                .max(4 << 20)
                .min(self.file_len.saturating_sub(off)) as usize;
            self.win = self.io.read_at(self.file, off, want.max(len)).await?;
            self.win_off = off;
        }
        let a = (off - self.win_off) as usize;
        let b = (a + len).min(self.win.len());
        Ok(&self.win[a.min(b)..b])
    }

    /// The header of an intact needle at `off`, or `None` if there is none.
    async fn needle_at(&mut self, off: u64) -> Result<Option<Header>, IoError> {
        if off + MIN_NEEDLE_LEN as u64 > self.file_len {
            return Ok(None);
        }
        let h = match Header::parse(self.bytes(off, HEADER_LEN).await?) {
            Ok(h) => h,
            Err(_) => return Ok(None),
        };
        let len = h.total_len() as u64;
        if off + len > self.file_len {
            return Ok(None);
        }
        let b = self.bytes(off, len as usize).await?.to_vec();
        Ok(match Needle::decode(b) {
            Ok(n) if n.header.key != 0 => Some(n.header),
            _ => None,
        })
    }

    /// The offset of the next intact needle at or after `from` (8-aligned), if any.
    async fn next_valid(&mut self, from: u64) -> Result<Option<u64>, IoError> {
        let mut off = from;
        while off + MIN_NEEDLE_LEN as u64 <= self.file_len {
            let magic = self.bytes(off, 4).await?;
            if magic == needle::NEEDLE_MAGIC.to_le_bytes() && self.needle_at(off).await?.is_some() {
                return Ok(Some(off));
            }
            off += 8;
        }
        Ok(None)
    }
}
