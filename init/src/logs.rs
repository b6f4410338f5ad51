//! Log capture: a bounded in-memory ring per service (and one for init itself), followers for
//! `logs --follow`, rotated files under `/data/log` once the data partition is mounted, and
//! init's own messages to `/dev/kmsg` (which the kernel shows on the console).

use aergo_os::control::LogLine;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Lines kept in memory per service.
pub const RING_LINES: usize = 2000;
/// A log file is rotated (to `.1`) past this size.
pub const ROTATE_BYTES: u64 = 4 * 1024 * 1024;
/// Longest line kept (longer ones are cut).
pub const MAX_LINE: usize = 4096;

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    seq: u64,
    file: Option<(File, u64)>,
}

#[derive(Default)]
struct Inner {
    rings: BTreeMap<String, Ring>,
    followers: Vec<(String, SyncSender<LogLine>)>,
    dir: Option<PathBuf>,
    kmsg: Option<File>,
    echo: bool,
}

/// The log store shared by every init thread.
pub struct LogStore {
    inner: Mutex<Inner>,
    capacity: usize,
    rotate: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl LogStore {
    /// A store keeping `capacity` lines per service and rotating files at `rotate` bytes.
    pub fn new(capacity: usize, rotate: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                echo: true,
                ..Default::default()
            }),
            capacity,
            rotate,
        }
    }

    /// Opens `/dev/kmsg` for init's messages (until then they go to stderr, the console).
    pub fn open_kmsg(&self) {
        if let Ok(f) = OpenOptions::new().write(true).open("/dev/kmsg") {
            self.inner.lock().kmsg = Some(f);
        }
    }

    /// Whether service output is echoed to the kernel log (and so the console).
    pub fn set_echo(&self, echo: bool) {
        self.inner.lock().echo = echo;
    }

    /// Starts writing `<dir>/<service>.log` files (once `/data` is mounted).
    pub fn set_dir(&self, dir: &Path) {
        let mut g = self.inner.lock();
        g.dir = Some(dir.to_path_buf());
        for ring in g.rings.values_mut() {
            ring.file = None;
        }
    }

    /// init's own message: ring `init`, and the kernel log at `level` (3 err, 5 notice, 6 info).
    pub fn init(&self, level: u8, text: &str) {
        {
            let mut g = self.inner.lock();
            let line = format!("<{level}>aergo-init: {text}\n");
            let written = match g.kmsg.as_mut() {
                Some(k) => k.write_all(line.as_bytes()).is_ok(),
                None => false,
            };
            if !written {
                let _ = std::io::stderr().write_all(format!("aergo-init: {text}\n").as_bytes());
            }
        }
        self.push("init", "init", text, false);
    }

    /// A line of service output.
    pub fn service(&self, service: &str, stream: &str, text: &str) {
        self.push(service, stream, text, true);
    }

    fn push(&self, service: &str, stream: &str, text: &str, echo: bool) {
        let mut text = text.trim_end_matches(['\n', '\r']).to_string();
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if echo && inner.echo {
            if let Some(k) = inner.kmsg.as_mut() {
                let _ = k.write_all(format!("<6>{service}: {text}\n").as_bytes());
            }
        }
        let ring = inner.rings.entry(service.to_string()).or_default();
        ring.seq += 1;
        let line = LogLine {
            service: service.to_string(),
            seq: ring.seq,
            ts_ms: now_ms(),
            stream: stream.to_string(),
            text,
        };
        if ring.lines.len() >= self.capacity {
            ring.lines.pop_front();
        }
        ring.lines.push_back(line.clone());
        if let Some(dir) = inner.dir.clone() {
            write_file(ring, &dir, service, &line, self.rotate);
        }
        inner.followers.retain(|(svc, tx)| {
            if svc != service {
                return true;
            }
            !matches!(
                tx.try_send(line.clone()),
                Err(TrySendError::Disconnected(_))
            )
        });
    }

    /// The last `n` lines of `service`.
    pub fn tail(&self, service: &str, n: usize) -> Vec<LogLine> {
        let g = self.inner.lock();
        g.rings
            .get(service)
            .map(|r| {
                let skip = r.lines.len().saturating_sub(n);
                r.lines.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default()
    }

    /// The last `n` lines and a receiver of every later line (atomically: none is lost).
    pub fn follow(&self, service: &str, n: usize) -> (Vec<LogLine>, Receiver<LogLine>) {
        let (tx, rx) = sync_channel(1024);
        let mut g = self.inner.lock();
        let backlog = g
            .rings
            .get(service)
            .map(|r| {
                let skip = r.lines.len().saturating_sub(n);
                r.lines.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default();
        g.followers.push((service.to_string(), tx));
        (backlog, rx)
    }

    /// Flushes log files (at shutdown).
    pub fn close_files(&self) {
        let mut g = self.inner.lock();
        for ring in g.rings.values_mut() {
            if let Some((f, _)) = ring.file.take() {
                let _ = f.sync_all();
            }
        }
        g.dir = None;
    }
}

fn write_file(ring: &mut Ring, dir: &Path, service: &str, line: &LogLine, rotate: u64) {
    let path = dir.join(format!("{service}.log"));
    if ring.file.is_none() {
        if let Ok(f) = OpenOptions::new().create(true).append(true).open(&path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            ring.file = Some((f, len));
        }
    }
    let text = format!("{} {} {}\n", line.ts_ms, line.stream, line.text);
    let mut rotate_now = false;
    if let Some((f, len)) = ring.file.as_mut() {
        if f.write_all(text.as_bytes()).is_ok() {
            *len += text.len() as u64;
        }
        rotate_now = *len >= rotate;
    }
    if rotate_now {
        ring.file = None;
        let _ = std::fs::rename(&path, dir.join(format!("{service}.log.1")));
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_tails() {
        let s = LogStore::new(3, ROTATE_BYTES);
        for i in 0..5 {
            s.service("node", "stdout", &format!("line {i}\n"));
        }
        let t = s.tail("node", 10);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].text, "line 2");
        assert_eq!(t[2].seq, 5);
        assert_eq!(s.tail("node", 1)[0].text, "line 4");
        assert!(s.tail("other", 5).is_empty());
    }

    #[test]
    fn followers_get_new_lines_of_their_service_only() {
        let s = LogStore::new(10, ROTATE_BYTES);
        s.service("node", "stdout", "old");
        let (backlog, rx) = s.follow("node", 10);
        assert_eq!(backlog.len(), 1);
        s.service("aergofs", "stdout", "x");
        s.service("node", "stderr", "new");
        let got = rx.try_recv().unwrap();
        assert_eq!((got.text.as_str(), got.stream.as_str()), ("new", "stderr"));
        assert!(rx.try_recv().is_err());
        drop(rx);
        s.service("node", "stdout", "after");
        assert!(s.inner.lock().followers.is_empty());
    }

    #[test]
    fn files_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::new(10, 100);
        s.set_dir(dir.path());
        for i in 0..20 {
            s.service(
                "node",
                "stdout",
                &format!("a fairly long log line number {i}"),
            );
        }
        s.service("node", "stdout", "final");
        s.close_files();
        assert!(dir.path().join("node.log.1").exists());
        let cur = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
        assert!(cur.len() < 200);
        assert!(cur.ends_with("stdout final\n"), "{cur}");
        let old = std::fs::read_to_string(dir.path().join("node.log.1")).unwrap();
        assert!(old.contains("number 19"), "{old}");
    }
}
