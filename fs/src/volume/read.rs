//! The read path of a [`Volume`]: one positioned read of the whole needle (through the page
//! cache, or O_DIRECT for cold reads), verified before any byte is returned.
//!
//! Invariants:
//! - The index entry and the file handle are taken together under the `state` lock, then the
//!   lock is released before the read. Reads do not take the `gate`: a compaction swaps the
//!   handle and the index at once, and an old handle stays readable (the renamed-over file
//!   lives while a read holds its `Arc`).
//! - A needle is served only if it decodes (magic, lengths, flags, CRC32C), its key and total
//!   length match the index entry and it is not a tombstone; a cookie mismatch reads as
//!   [`VolumeError::NotFound`]; any other failure is [`VolumeError::Corrupt`] — never wrong
//!   bytes.
//! - The O_DIRECT handle reopens the very inode being written (`/proc/self/fd/N`) and is
//!   dropped when a compaction swaps the file.

use super::{file_err, Volume, VolumeError};
use crate::index::Entry;
use crate::needle::Needle;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Arc;

impl Volume {
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
        let from = crate::usize_from(e.byte_offset() - start);
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
        Ok((file, e, start, crate::usize_from(end - start)))
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
}
