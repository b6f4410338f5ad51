//! The volume manager: every volume under a data directory, file-id assignment, routing of
//! reads/writes/deletes, read-only marking of full volumes, statistics and compaction.

use crate::fid::Fid;
use crate::limits;
use crate::needle::{Meta, Needle, NeedleBuf};
use crate::volume::{
    self, CompactReport, Durability, Volume, VolumeConfig, VolumeError, VolumeStats, WriteInfo,
};
use aergo_os::io::{IoService, IoStats};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Settings applied to every volume.
    pub volume: VolumeConfig,
    /// Compact a volume when its garbage ratio passes this (default 0.3).
    pub garbage_threshold: f64,
    /// Do not bother compacting volumes with less garbage than this many bytes.
    pub min_garbage_bytes: u64,
    /// How often the background task checks for volumes to compact (`None`: never).
    pub compaction_interval: Option<Duration>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            volume: VolumeConfig::default(),
            garbage_threshold: limits::DEFAULT_GARBAGE_THRESHOLD,
            min_garbage_bytes: limits::MIN_GARBAGE_BYTES,
            compaction_interval: Some(Duration::from_secs(
                limits::DEFAULT_COMPACTION_INTERVAL_SECS,
            )),
        }
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file id names a volume this store does not have.
    #[error("unknown volume {0}")]
    UnknownVolume(u32),
    /// An error from a volume.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another aergofs process")]
    Locked(PathBuf),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Store-wide statistics (`/status`).
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    /// Data directory.
    pub dir: String,
    /// Write durability mode.
    pub durability: Durability,
    /// I/O backend and counters.
    pub io: IoStats,
    /// Why io_uring is not used, if it is not.
    pub io_fallback_reason: Option<String>,
    /// Per-volume statistics.
    pub volumes: Vec<VolumeStats>,
    /// Volumes that failed to load: (id, error).
    pub failed_volumes: Vec<(u32, String)>,
    /// Live needles across volumes.
    pub live_needles: u64,
    /// Bytes of live needles.
    pub live_bytes: u64,
    /// Heap bytes of all in-memory indexes.
    pub index_bytes: u64,
    /// `index_bytes / live_needles`.
    pub index_bytes_per_live_needle: f64,
}

/// The volume manager.
pub struct Store {
    dir: PathBuf,
    io: IoService,
    cfg: StoreConfig,
    volumes: RwLock<BTreeMap<u32, Arc<Volume>>>,
    failed: Mutex<BTreeMap<u32, String>>,
    create: tokio::sync::Mutex<()>,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

fn volume_ids(dir: &Path) -> Result<Vec<u32>, std::io::Error> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        if matches!(ext, "dat" | "cpd" | "cpm") {
            if let Ok(id) = stem.parse::<u32>() {
                if id > 0 && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

impl Store {
    /// Opens (creating if needed) the data directory `dir`: locks it, finishes interrupted
    /// compactions, and loads every volume with start-up recovery. Volumes that cannot be
    /// loaded are reported in [`StoreStats::failed_volumes`] and left untouched.
    pub async fn open(
        dir: &Path,
        cfg: StoreConfig,
        io: IoService,
    ) -> Result<Arc<Store>, StoreError> {
        let derr = |source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(derr)?;
        let lock = File::create(dir.join("LOCK")).map_err(derr)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        let mut volumes = BTreeMap::new();
        let mut failed = BTreeMap::new();
        for id in volume_ids(dir).map_err(derr)? {
            match volume::resolve_compaction(dir, id) {
                Ok(Some(what)) => tracing::warn!(volume = id, "interrupted compaction {what}"),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(volume = id, error = %e, "cannot resolve interrupted compaction");
                    failed.insert(id, e.to_string());
                    continue;
                }
            }
            if !volume::VolumePaths::new(dir, id).dat.exists() {
                continue;
            }
            match Volume::open(dir, id, io.clone(), cfg.volume.clone()).await {
                Ok(v) => {
                    volumes.insert(id, v);
                }
                Err(e) => {
                    tracing::error!(volume = id, error = %e, "volume not loaded");
                    failed.insert(id, e.to_string());
                }
            }
        }
        tracing::info!(dir = %dir.display(), volumes = volumes.len(), failed = failed.len(), io = %io.backend(), "store opened");
        let store = Arc::new(Store {
            dir: dir.to_path_buf(),
            io,
            cfg,
            volumes: RwLock::new(volumes),
            failed: Mutex::new(failed),
            create: tokio::sync::Mutex::new(()),
            _lock: lock,
        });
        if let Some(every) = store.cfg.compaction_interval {
            tokio::spawn(auto_compact(Arc::downgrade(&store), every));
        }
        Ok(store)
    }

    /// The I/O service.
    pub fn io(&self) -> &IoService {
        &self.io
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn volume(&self, id: u32) -> Result<Arc<Volume>, StoreError> {
        self.volumes
            .read()
            .get(&id)
            .cloned()
            .ok_or(StoreError::UnknownVolume(id))
    }

    async fn writable(&self) -> Result<Arc<Volume>, StoreError> {
        if let Some(v) = self.volumes.read().values().find(|v| v.is_writable()) {
            return Ok(v.clone());
        }
        let _g = self.create.lock().await;
        if let Some(v) = self.volumes.read().values().find(|v| v.is_writable()) {
            return Ok(v.clone());
        }
        let id = {
            let vols = self.volumes.read();
            let failed = self.failed.lock();
            let a = vols.keys().next_back().copied().unwrap_or(0);
            let b = failed.keys().next_back().copied().unwrap_or(0);
            a.max(b) + 1
        };
        let v = Volume::create(&self.dir, id, self.io.clone(), self.cfg.volume.clone()).await?;
        tracing::info!(volume = id, "created volume");
        self.volumes.write().insert(id, v.clone());
        Ok(v)
    }

    /// Assigns a new file id on a writable volume (creating one if needed; a volume whose
    /// keys are used up takes no more assignments). The id's first write must carry its
    /// cookie (see [`crate::volume::Volume::write`]).
    pub async fn assign(&self) -> Result<Fid, StoreError> {
        let mut tries = 0;
        loop {
            let v = self.writable().await?;
            match v.assign() {
                Ok((key, cookie)) => {
                    return Ok(Fid {
                        volume: v.id(),
                        key,
                        cookie,
                    })
                }
                Err(VolumeError::KeysExhausted(id)) if tries < 3 => {
                    tracing::warn!(volume = id, "volume has no keys left to assign");
                    tries += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes `data` under a file id: its first write after [`Store::assign`], or a
    /// replacement of a live file with the same cookie. Anything else is refused.
    pub async fn write(&self, fid: Fid, data: &[u8], meta: &Meta) -> Result<WriteInfo, StoreError> {
        Ok(self
            .volume(fid.volume)?
            .write(fid.key, fid.cookie, data, meta)
            .await?)
    }

    /// Whether [`Store::write`] to `fid` would be accepted now (checked again by the write).
    pub async fn check_write(&self, fid: Fid) -> Result<(), StoreError> {
        Ok(self
            .volume(fid.volume)?
            .check_write(fid.key, fid.cookie)
            .await?)
    }

    /// [`Store::write`] of data already in a needle buffer (uploads are read into one).
    pub async fn write_buf(
        &self,
        fid: Fid,
        data: NeedleBuf,
        meta: &Meta,
    ) -> Result<WriteInfo, StoreError> {
        Ok(self
            .volume(fid.volume)?
            .write_buf(fid.key, fid.cookie, data, meta)
            .await?)
    }

    /// Assigns a file id and writes `data` under it (moving on to a new volume if the chosen
    /// one fills up meanwhile).
    pub async fn put(&self, data: &[u8], meta: &Meta) -> Result<(Fid, WriteInfo), StoreError> {
        let mut tries = 0;
        loop {
            let fid = self.assign().await?;
            match self.write(fid, data, meta).await {
                Err(StoreError::Volume(VolumeError::ReadOnly(..))) if tries < 3 => tries += 1,
                r => return r.map(|w| (fid, w)),
            }
        }
    }

    /// [`Store::put`] of data already in a needle buffer. The buffer is consumed by the
    /// write, so the volume is chosen with room for the needle first (a volume without
    /// room is full, as [`Store::put`] finds out by writing); one that another writer fills
    /// in between answers [`VolumeError::ReadOnly`].
    pub async fn put_buf(
        &self,
        data: NeedleBuf,
        meta: &Meta,
    ) -> Result<(Fid, WriteInfo), StoreError> {
        let len = crate::needle::total_len(
            data.data_len(),
            meta.name.as_ref().map_or(0, |n| n.len()),
            meta.mime.as_ref().map_or(0, |m| m.len()),
        ) as u64;
        let mut tries = 0;
        let fid = loop {
            let fid = self.assign().await?;
            if self.volume(fid.volume)?.has_room(len) || tries >= 3 {
                break fid;
            }
            tries += 1;
        };
        let w = self.write_buf(fid, data, meta).await?;
        Ok((fid, w))
    }

    /// Reads and verifies a needle.
    pub async fn read(&self, fid: Fid) -> Result<Needle, StoreError> {
        Ok(self.volume(fid.volume)?.read(fid.key, fid.cookie).await?)
    }

    /// Reads a needle bypassing the page cache (O_DIRECT), for cold-read measurements.
    pub async fn read_direct(&self, fid: Fid) -> Result<Needle, StoreError> {
        Ok(self
            .volume(fid.volume)?
            .read_direct(fid.key, fid.cookie)
            .await?)
    }

    /// Blocking form of [`Store::read_direct`] for sync callers (not on a runtime worker).
    pub fn read_direct_blocking(&self, fid: Fid) -> Result<Needle, StoreError> {
        Ok(self
            .volume(fid.volume)?
            .read_direct_blocking(fid.key, fid.cookie)?)
    }

    /// Offset and length of a live needle in its volume file.
    pub fn locate(&self, fid: Fid) -> Option<(u64, u32)> {
        self.volume(fid.volume).ok()?.locate(fid.key)
    }

    /// The `.dat` path of a volume.
    pub fn volume_path(&self, id: u32) -> PathBuf {
        volume::VolumePaths::new(&self.dir, id).dat
    }

    /// Deletes a needle; returns its size on disk.
    pub async fn delete(&self, fid: Fid) -> Result<u32, StoreError> {
        Ok(self.volume(fid.volume)?.delete(fid.key, fid.cookie).await?)
    }

    /// Compacts one volume, or every volume over the garbage threshold.
    pub async fn compact(&self, id: Option<u32>) -> Result<Vec<CompactReport>, StoreError> {
        let targets: Vec<Arc<Volume>> = match id {
            Some(id) => vec![self.volume(id)?],
            None => self
                .volumes
                .read()
                .values()
                .filter(|v| {
                    let s = v.stats();
                    s.garbage_ratio >= self.cfg.garbage_threshold
                        && s.garbage_bytes >= self.cfg.min_garbage_bytes
                })
                .cloned()
                .collect(),
        };
        let mut out = Vec::new();
        for v in targets {
            out.push(v.compact().await?);
        }
        Ok(out)
    }

    /// Statistics.
    pub fn stats(&self) -> StoreStats {
        let volumes: Vec<VolumeStats> = self.volumes.read().values().map(|v| v.stats()).collect();
        let live_needles: u64 = volumes.iter().map(|v| v.live_needles).sum();
        let index_bytes: u64 = volumes.iter().map(|v| v.index_bytes).sum();
        StoreStats {
            dir: self.dir.display().to_string(),
            durability: self.cfg.volume.durability,
            io: self.io.stats(),
            io_fallback_reason: self.io.fallback_reason(),
            live_bytes: volumes.iter().map(|v| v.live_bytes).sum(),
            live_needles,
            index_bytes,
            index_bytes_per_live_needle: if live_needles == 0 {
                0.0
            } else {
                index_bytes as f64 / live_needles as f64
            },
            volumes,
            failed_volumes: self
                .failed
                .lock()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
        }
    }

    /// Flushes every index and fsyncs every volume (graceful shutdown).
    pub async fn close(&self) -> Result<(), StoreError> {
        let vols: Vec<Arc<Volume>> = self.volumes.read().values().cloned().collect();
        for v in vols {
            v.close().await?;
        }
        Ok(())
    }
}

async fn auto_compact(store: std::sync::Weak<Store>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = store.upgrade() else { return };
        match s.compact(None).await {
            Ok(r) if !r.is_empty() => tracing::info!(reports = ?r, "automatic compaction"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "automatic compaction failed"),
        }
    }
}
