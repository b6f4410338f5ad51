//! One node per data folder: an advisory `flock` on `<data>/node.lock`, taken before the node
//! key or the database is touched and held for the life of the process (the kernel releases it
//! when the process ends, however it ends, so a crash never leaves a stale lock behind).
//!
//! The file holds the owner's pid, only so the refusal can name it; the lock is the `flock`,
//! not the file's existence.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the data folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "another aergo-node is running on the data folder {dir}{pid}: stop it first, or give \
         this node its own --data-dir",
        pid = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        /// The data folder.
        dir: PathBuf,
        /// The pid recorded by the holder, when readable.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock the data folder {dir}: {source}")]
    Io {
        /// The data folder.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

/// Takes the data folder's lock or says who holds it.
pub fn lock(dir: &Path) -> Result<DataLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("node.lock"))
        .map_err(io)?;
    // SAFETY: `f` is an open file descriptor owned by this function for the whole call;
    // flock only reads the descriptor number and touches no memory of ours.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut s = String::new();
            let pid = f
                .read_to_string(&mut s)
                .ok()
                .and_then(|_| s.trim().parse().ok());
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        return Err(io(e));
    }
    f.set_len(0).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(f, "{}", std::process::id()).map_err(io)?;
    Ok(DataLock { _file: f })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let held = lock(d.path()).unwrap();
        // flock locks belong to the open file description: a second open in the same
        // process conflicts just as another process would.
        let err = lock(d.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("another aergo-node is running"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        assert!(lock(d.path()).is_ok(), "released on drop");
    }
}
