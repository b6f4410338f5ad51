//! Free space on the data disk while the node runs. Below [`MIN_RUN_FREE_MIB`] the producer
//! pauses and blocks from peers are not imported (a write into a full disk makes Debian's
//! librocksdb abort on the I/O error instead of reporting it); `node_status` says
//! `disk_low`, the log says why, and everything resumes by itself once space is freed. The
//! start-up check ([`check_start`], [`MIN_START_FREE_MIB`]) is stricter, so a node that starts
//! has room.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Least free space, in MiB, for the node to keep writing blocks.
pub const MIN_RUN_FREE_MIB: u64 = 64;

/// Least free space, in MiB, for the node to start: RocksDB preallocates its write-ahead log
/// (up to ~70 MiB) and table files, and on a disk that cannot hold them it fails mid-write.
pub const MIN_START_FREE_MIB: u64 = 128;

/// Refuses to start, with the figures, when the data disk is nearly full (before anything is
/// written). A disk that cannot be measured is reported and let through.
pub fn check_start(dir: &Path) -> anyhow::Result<()> {
    match aergo_os::sample::statvfs(dir) {
        Ok((total, available, _)) if available < MIN_START_FREE_MIB << 20 => anyhow::bail!(
            "only {} MiB free of {} MiB on the data disk of {} (the node needs at least {} MiB: \
             RocksDB preallocates its log and tables); free space or use a larger disk \
             (the appliance grows /data to fill its disk at boot)",
            available >> 20,
            total >> 20,
            dir.display(),
            MIN_START_FREE_MIB
        ),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot measure the data disk's free space");
            Ok(())
        }
    }
}

/// How often the disk is measured.
const CHECK_EVERY_MS: u64 = 1000;

/// Watches the data disk's free space (cheap: one `statvfs` a second at most).
#[derive(Default)]
pub struct DiskGuard {
    dir: OnceLock<PathBuf>,
    low: AtomicBool,
    checked_ms: AtomicU64,
}

impl DiskGuard {
    /// Starts watching the filesystem holding `dir`.
    pub fn watch(&self, dir: PathBuf) {
        let _ = self.dir.set(dir);
    }

    /// The last measurement found less than [`MIN_RUN_FREE_MIB`] free.
    pub fn low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Re-measures when the last measurement is older than a second; true when writing may
    /// go on. A disk that cannot be measured counts as having room.
    pub fn check(&self, now_ms: u64) -> bool {
        let Some(dir) = self.dir.get() else {
            return true;
        };
        let last = self.checked_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < CHECK_EVERY_MS {
            return !self.low();
        }
        self.checked_ms.store(now_ms.max(1), Ordering::Relaxed);
        let (low, avail) = match aergo_os::sample::statvfs(dir) {
            Ok((_, avail, _)) => (avail < MIN_RUN_FREE_MIB << 20, avail),
            Err(_) => (false, 0),
        };
        let was = self.low.swap(low, Ordering::Relaxed);
        if low && !was {
            tracing::error!(
                free_mib = avail >> 20,
                need_mib = MIN_RUN_FREE_MIB,
                dir = %dir.display(),
                "data disk nearly full: block production and block imports paused until space is freed"
            );
        } else if !low && was {
            tracing::info!(
                free_mib = avail >> 20,
                "data disk has room again: production and imports resume"
            );
        }
        !low
    }
}
