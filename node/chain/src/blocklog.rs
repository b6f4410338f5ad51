//! The block log: committed blocks appended to segment files through the `aergo_os::io`
//! service (io_uring, or the std fallback), fsynced once per block before the block is
//! applied to RocksDB. It is the chain's write-ahead log and source of truth: on start-up
//! the chain replays complete frames found past RocksDB's tip and cuts a torn tail.
//!
//! Segment files `seg-NNNNNNNN.blk` (at most [`SEGMENT_MAX`] bytes) hold frames:
//! `magic u32 ‖ len u32 ‖ crc32c u32 ‖ height u64 ‖ payload(len)`, the CRC32C covering
//! height ‖ payload. A frame never spans two segments.

use crate::error::ChainError;
use aergo_os::io::IoService;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Frame magic ("AERG").
pub const MAGIC: u32 = 0x4145_5247;
/// Frame header size.
pub const FRAME_HEADER: usize = 20;
pub use crate::limits::SEGMENT_MAX;

/// A position in the log: segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LogPos {
    /// Segment number.
    pub seg: u32,
    /// Byte offset in the segment.
    pub offset: u64,
}

impl LogPos {
    /// 12-byte encoding.
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.seg.to_be_bytes());
        b[4..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }
    /// From 12 bytes.
    pub fn decode(b: &[u8]) -> Result<Self, ChainError> {
        if b.len() != 12 {
            return Err(ChainError::Corrupt("log position".into()));
        }
        let mut s = [0u8; 4];
        s.copy_from_slice(&b[..4]);
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[4..]);
        Ok(LogPos {
            seg: u32::from_be_bytes(s),
            offset: u64::from_be_bytes(o),
        })
    }
}

/// Where one block's frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Start of the frame.
    pub pos: LogPos,
    /// Payload length.
    pub len: u32,
}

impl Location {
    /// The position just past this frame.
    pub fn end(&self) -> LogPos {
        LogPos {
            seg: self.pos.seg,
            offset: self.pos.offset + FRAME_HEADER as u64 + self.len as u64,
        }
    }
}

/// One frame found by a scan.
#[derive(Debug)]
pub struct Frame {
    /// Where it is.
    pub loc: Location,
    /// Block height recorded in the frame.
    pub height: u64,
    /// The block bytes.
    pub payload: Vec<u8>,
}

struct Active {
    seg: u32,
    file: Arc<File>,
    end: u64,
}

/// The block log.
pub struct BlockLog {
    dir: PathBuf,
    io: IoService,
    active: Mutex<Active>,
    readers: Mutex<HashMap<u32, Arc<File>>>,
}

fn seg_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("seg-{seg:08}.blk"))
}

fn crc(height: u64, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&height.to_be_bytes());
    crc32c::crc32c_append(c, payload)
}

fn log_err(e: impl std::fmt::Display) -> ChainError {
    ChainError::Log(e.to_string())
}

impl BlockLog {
    /// Opens the log in `dir` (created if absent).
    pub fn open(dir: &Path, io: IoService) -> Result<Self, ChainError> {
        std::fs::create_dir_all(dir)?;
        let segs = list_segments(dir)?;
        let seg = segs.last().copied().unwrap_or(0);
        let file = open_rw(&seg_path(dir, seg))?;
        let end = file.metadata()?.len();
        if segs.is_empty() {
            sync_dir(dir)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            io,
            active: Mutex::new(Active {
                seg,
                file: Arc::new(file),
                end,
            }),
            readers: Mutex::new(HashMap::new()),
        })
    }

    /// The I/O backend in use.
    pub fn io(&self) -> &IoService {
        &self.io
    }

    /// The current end of the log.
    pub fn end(&self) -> LogPos {
        let a = self.active.lock();
        LogPos {
            seg: a.seg,
            offset: a.end,
        }
    }

    /// Appends a block and makes it durable (write, then fdatasync) before returning.
    pub fn append(&self, height: u64, payload: &[u8]) -> Result<Location, ChainError> {
        let len = u32::try_from(payload.len()).map_err(|_| {
            ChainError::Log(format!("a {} byte block cannot be framed", payload.len()))
        })?;
        let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
        frame.extend_from_slice(&MAGIC.to_be_bytes());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&crc(height, payload).to_be_bytes());
        frame.extend_from_slice(&height.to_be_bytes());
        frame.extend_from_slice(payload);
        let mut a = self.active.lock();
        if a.end > 0 && a.end + frame.len() as u64 > SEGMENT_MAX {
            let seg = a.seg + 1;
            let f = open_rw(&seg_path(&self.dir, seg))?;
            sync_dir(&self.dir)?;
            *a = Active {
                seg,
                file: Arc::new(f),
                end: 0,
            };
        }
        let loc = Location {
            pos: LogPos {
                seg: a.seg,
                offset: a.end,
            },
            len,
        };
        let n = frame.len() as u64;
        self.io
            .write_at_blocking(&a.file, a.end, frame)
            .map_err(log_err)?;
        self.io.fsync_blocking(&a.file).map_err(log_err)?;
        a.end += n;
        Ok(loc)
    }

    fn reader(&self, seg: u32) -> Result<Arc<File>, ChainError> {
        {
            let a = self.active.lock();
            if a.seg == seg {
                return Ok(a.file.clone());
            }
        }
        let mut r = self.readers.lock();
        if let Some(f) = r.get(&seg) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(seg_path(&self.dir, seg))?);
        r.insert(seg, f.clone());
        Ok(f)
    }

    /// Reads one block's bytes, checking magic, length, height and CRC.
    pub fn read(&self, loc: &Location, height: u64) -> Result<Vec<u8>, ChainError> {
        let f = self.reader(loc.pos.seg)?;
        let mut buf = vec![0u8; FRAME_HEADER + loc.len as usize];
        f.read_exact_at(&mut buf, loc.pos.offset)?;
        match parse_frame(&buf) {
            Some((h, payload)) if h == height && payload.len() == loc.len as usize => {
                Ok(payload.to_vec())
            }
            _ => Err(ChainError::Corrupt(format!(
                "block log frame at segment {} offset {} (height {height}) fails its checks",
                loc.pos.seg, loc.pos.offset
            ))),
        }
    }

    /// Reads every complete, valid frame from `from` to the end of the log. Returns the frames
    /// and, if the log continues with bytes that are not a valid frame (a torn tail), the
    /// position where the valid prefix ends.
    pub fn scan_from(&self, from: LogPos) -> Result<(Vec<Frame>, Option<LogPos>), ChainError> {
        let mut frames = Vec::new();
        let segs = list_segments(&self.dir)?;
        for seg in segs.into_iter().filter(|s| *s >= from.seg) {
            let data = std::fs::read(seg_path(&self.dir, seg))?;
            let mut off = if seg == from.seg {
                usize::try_from(from.offset).unwrap_or(usize::MAX)
            } else {
                0
            };
            if off > data.len() {
                return Err(ChainError::Log(format!(
                    "segment {seg} is {} bytes but the database expects at least {off}: the block log lost committed blocks",
                    data.len()
                )));
            }
            while off < data.len() {
                let rest = data.get(off..).unwrap_or(&[]);
                match parse_frame(rest) {
                    Some((height, payload)) => {
                        // A frame's payload was read through its u32 length field: it fits.
                        #[allow(clippy::cast_possible_truncation)]
                        let len = payload.len() as u32;
                        frames.push(Frame {
                            loc: Location {
                                pos: LogPos {
                                    seg,
                                    offset: off as u64,
                                },
                                len,
                            },
                            height,
                            payload: payload.to_vec(),
                        });
                        off += FRAME_HEADER + len as usize;
                    }
                    None => {
                        return Ok((
                            frames,
                            Some(LogPos {
                                seg,
                                offset: off as u64,
                            }),
                        ))
                    }
                }
            }
        }
        Ok((frames, None))
    }

    /// Cuts the log at `pos`: later segments are deleted, the segment is truncated, and the
    /// change is fsynced. Used to drop a torn tail.
    pub fn truncate(&self, pos: LogPos) -> Result<(), ChainError> {
        let mut a = self.active.lock();
        for seg in list_segments(&self.dir)?
            .into_iter()
            .filter(|s| *s > pos.seg)
        {
            std::fs::remove_file(seg_path(&self.dir, seg))?;
            self.readers.lock().remove(&seg);
        }
        let f = open_rw(&seg_path(&self.dir, pos.seg))?;
        f.set_len(pos.offset)?;
        f.sync_all()?;
        sync_dir(&self.dir)?;
        *a = Active {
            seg: pos.seg,
            file: Arc::new(f),
            end: pos.offset,
        };
        Ok(())
    }
}

fn parse_frame(b: &[u8]) -> Option<(u64, &[u8])> {
    let hdr = b.get(..FRAME_HEADER)?;
    let word =
        |i: usize| -> Option<u32> { Some(u32::from_be_bytes(hdr.get(i..i + 4)?.try_into().ok()?)) };
    if word(0)? != MAGIC {
        return None;
    }
    let len = word(4)? as usize;
    let c = word(8)?;
    let height = u64::from_be_bytes(hdr.get(12..20)?.try_into().ok()?);
    let payload = b.get(FRAME_HEADER..FRAME_HEADER + len)?;
    (crc(height, payload) == c).then_some((height, payload))
}

fn open_rw(p: &Path) -> Result<File, ChainError> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)?)
}

fn sync_dir(dir: &Path) -> Result<(), ChainError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<u32>, ChainError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|s| s.strip_suffix(".blk"))
        {
            if let Ok(n) = n.parse::<u32>() {
                v.push(n);
            }
        }
    }
    v.sort_unstable();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_os::io::IoConfig;

    #[test]
    fn append_read_scan_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let io = IoService::start(IoConfig::default());
        let log = BlockLog::open(dir.path(), io.clone()).unwrap();
        let a = log.append(0, b"genesis").unwrap();
        let b = log.append(1, b"block one").unwrap();
        assert_eq!(log.read(&b, 1).unwrap(), b"block one");
        assert!(log.read(&b, 2).is_err());
        let (frames, torn) = log.scan_from(a.end()).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].height, 1);
        assert!(torn.is_none());
        drop(log);
        // Tear the tail: half a frame appended.
        let p = seg_path(dir.path(), 0);
        let mut data = std::fs::read(&p).unwrap();
        let keep = data.len();
        data.extend_from_slice(&MAGIC.to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 50, 1, 2]);
        std::fs::write(&p, &data).unwrap();
        let log = BlockLog::open(dir.path(), io).unwrap();
        let (frames, torn) = log.scan_from(LogPos::default()).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            torn,
            Some(LogPos {
                seg: 0,
                offset: keep as u64
            })
        );
        log.truncate(torn.unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), keep as u64);
        let c = log.append(2, b"two").unwrap();
        assert_eq!(c.pos.offset, keep as u64);
        assert_eq!(log.read(&c, 2).unwrap(), b"two");
    }

    /// The same log works on the std fallback (the io service's own tests force it with a
    /// seccomp filter; here the configuration forces it).
    #[test]
    fn std_fallback_backend_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let io = IoService::start(IoConfig {
            force_std: true,
            ..IoConfig::default()
        });
        assert_eq!(io.backend(), aergo_os::io::Backend::Std);
        let log = BlockLog::open(dir.path(), io).unwrap();
        let a = log.append(0, b"zero").unwrap();
        let b = log.append(1, b"one").unwrap();
        assert_eq!(log.read(&a, 0).unwrap(), b"zero");
        assert_eq!(log.read(&b, 1).unwrap(), b"one");
        assert!(log.io().stats().completed >= 4);
    }

    #[test]
    fn flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let log = BlockLog::open(dir.path(), IoService::start(IoConfig::default())).unwrap();
        let a = log.append(5, b"payload").unwrap();
        let p = seg_path(dir.path(), 0);
        let mut data = std::fs::read(&p).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0x40;
        std::fs::write(&p, &data).unwrap();
        assert!(matches!(log.read(&a, 5), Err(ChainError::Corrupt(_))));
        let (frames, torn) = log.scan_from(LogPos::default()).unwrap();
        assert!(frames.is_empty());
        assert_eq!(torn, Some(LogPos::default()));
    }
}
