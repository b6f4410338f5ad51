//! Start-up recovery of a volume (FORMAT.md "Recovery at start-up"): resolution of an
//! interrupted compaction, validation of the `.idx` records, verification of its tail, the
//! orphan scan past the last record, skipping of damaged regions and cutting of a torn tail.
//!
//! Invariants:
//! - Runs before the [`Volume`] exists (from [`Volume::open`]), on a `State` no other task
//!   sees, so it needs no lock.
//! - The `.dat` file is modified only to cut a torn tail (nothing intact follows); a volume
//!   whose superblock is bad never reaches this code.
//! - After recovery, every needle below `st.end` is intact or a logged, skipped region, and
//!   every needle past the last kept `.idx` record has its record queued in `st.idx_buf`
//!   (written by the first flush in [`Volume::open`]).
//! - [`resolve_compaction`] rolls forward exactly when the marker `ID.cpm` exists.

#[cfg(doc)]
use super::Volume;
use super::{
    file_err, idx_header, idx_record, needle_len32, parse_record, sync_dir, RecoveryReport, State,
    VolumeError, VolumePaths, IDX_HEADER_LEN, IDX_RECORD_LEN, SB_LEN,
};
use crate::limits::{RECOVERY_SCAN_WINDOW, RECOVERY_TAIL_CHECK};
use crate::needle::{self, Header, Needle, HEADER_LEN, MIN_NEEDLE_LEN};
use aergo_os::io::{IoError, IoService};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

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

/// Start-up recovery (see FORMAT.md "Recovery").
pub(super) async fn recover(
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
        let check_from = records.len().saturating_sub(RECOVERY_TAIL_CHECK);
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
                st.apply(
                    h.key,
                    pos,
                    needle_len32(h.total_len() as u64),
                    h.is_tombstone(),
                );
                st.idx_buf.extend_from_slice(&idx_record(
                    h.key,
                    pos,
                    needle_len32(h.total_len() as u64),
                    h.is_tombstone(),
                ));
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
                .max(RECOVERY_SCAN_WINDOW)
                .min(self.file_len.saturating_sub(off));
            let want = crate::usize_from(want);
            self.win = self.io.read_at(self.file, off, want.max(len)).await?;
            self.win_off = off;
        }
        let a = crate::usize_from(off - self.win_off);
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
        let b = self.bytes(off, crate::usize_from(len)).await?.to_vec();
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
