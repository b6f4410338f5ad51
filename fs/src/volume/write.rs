//! The write path of a [`Volume`]: authorization of writes and deletes, appending needles,
//! the group committer and the release of `.idx` records to their file.
//!
//! Invariants:
//! - A write or delete holds the volume's `gate` shared from [`Volume::authorize`] to its
//!   acknowledgement, so a compaction commit never swaps the files under it; the cookie check
//!   (FORMAT.md "Writes and deletes") and the append see the same file.
//! - The offset is reserved under the `state` lock (`st.end += len`) before the I/O; the lock
//!   is not held across the write or the fsync.
//! - When a write is acknowledged in group-commit mode, its needle is written and covered by
//!   an `fdatasync` that started after the write completed; only then is the index updated
//!   (`State::apply`) and its record released (`State::settle`). A failed write leaves the
//!   volume read-only (the start-up scan decides what is really on disk).
//! - `.idx` records are appended in release order under `flush_lock`, at most about once a
//!   second by the flusher task (sooner when 256 KiB are pending), and fsynced with it.

use super::{idx_record, needle_len32, CommitReq, Durability, Volume, VolumeError, WriteInfo};
use crate::limits::{COMMIT_PIPELINE, IDX_FLUSH_BYTES, IDX_FLUSH_INTERVAL};
use crate::needle::{self, Header, Meta, NeedleBuf, NeedleError, HEADER_LEN};
use aergo_os::io::IoService;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

impl Volume {
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
                st.apply(key, offset, needle_len32(len), tombstone);
                st.consume_pending(key);
                st.settle(
                    offset,
                    len,
                    Some(idx_record(key, offset, needle_len32(len), tombstone)),
                );
                let big = st.idx_buf.len() >= IDX_FLUSH_BYTES;
                drop(st);
                if big {
                    self.flush_now.notify_one();
                }
                Ok(WriteInfo {
                    offset,
                    len: needle_len32(len),
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
}

/// Group commit: one fdatasync for every request queued while the previous one ran.
pub(super) async fn committer(io: IoService, mut rx: mpsc::UnboundedReceiver<CommitReq>) {
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

/// Appends index records to `.idx` every second (sooner when many are pending) and fsyncs it.
pub(super) async fn flusher(vol: Weak<Volume>) {
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
            _ = tokio::time::sleep(IDX_FLUSH_INTERVAL) => {}
        }
        // `v` is dropped here: if the store let go of the volume, the next upgrade fails.
    }
}
