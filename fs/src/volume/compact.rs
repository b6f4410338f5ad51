//! Online compaction of a [`Volume`] (FORMAT.md "Compaction").
//!
//! Live needles are copied in offset order to `ID.cpd` at a limited rate while writes,
//! deletes and reads continue on `ID.dat`; keys changed meanwhile are logged in
//! `State::compact_log` and replayed in rounds. The commit takes the `gate` exclusively
//! (in-flight writes finish first), replays the last changes, writes and fsyncs `ID.cpx` and
//! `ID.cpd`, fsyncs the directory, then creates and fsyncs the marker `ID.cpm` — the commit
//! point — renames both files into place, removes the marker and swaps the in-memory index
//! and handles under the `state` lock.
//!
//! Invariants:
//! - At most one compaction runs per volume (`compacting`).
//! - A crash (or error) before the marker leaves the old files intact, including writes made
//!   during the copy; after it, recovery rolls forward. An error after the marker makes the
//!   volume read-only until a restart finishes the commit.
//! - Tombstones are not copied, except one for the highest key assigned when it has no live
//!   needle, so key assignment never repeats a key.

use super::{
    file_err, idx_header, idx_record, needle_len32, offset_units, superblock, sync_dir,
    CompactReport, Volume, VolumeError, VolumePaths, SB_LEN,
};
use crate::index::{CompactIndex, Entry, DELETED};
use crate::limits::{COPY_WINDOW, REPLAY_ROUNDS, REPLAY_SMALL};
use crate::needle::{self, Meta};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Volume {
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
        for _ in 0..REPLAY_ROUNDS {
            let keys = {
                let mut st = self.state.lock();
                st.compact_log.replace(Vec::new()).unwrap_or_default()
            };
            if keys.len() < REPLAY_SMALL {
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
            let len = needle_len32(t.len() as u64);
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
                    offset: offset_units(off),
                    len,
                });
                live_bytes += len as u64;
            }
            // A key assigned and not yet written keeps its first write: its high-water
            // tombstone is on disk only (the write lands later in the file and wins at
            // recovery); indexing it would refuse that write as one to a deleted key.
            if let Some((off, len)) = high_mark.filter(|_| st.pending_cookie(high).is_none()) {
                index.put(Entry {
                    key: high,
                    offset: offset_units(off),
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
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
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
                .read_at(&self.src, start, crate::usize_from(stop - start))
                .await
                .map_err(self.vol.ioe())?;
            for e in &live[i..j] {
                let a = crate::usize_from(e.byte_offset() - start);
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
        self.map
            .insert(key, (self.end, needle_len32(needle.len() as u64)));
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
