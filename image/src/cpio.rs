//! A writer for the `newc` cpio format the kernel unpacks as the initramfs.
//!
//! Entries are collected in memory as (path → entry) so parent folders are created
//! automatically and the archive is written in sorted order (parents before children).

use std::collections::BTreeMap;
use std::io::Write;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A folder with permission bits.
    Dir(u32),
    /// A regular file with permission bits and contents.
    File(u32, Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device (mode, major, minor).
    CharDev(u32, u32, u32),
}

/// An initramfs under construction.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn norm(path: &str) -> String {
    path.trim_matches('/').to_string()
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.entries.entry(acc.clone()).or_insert(Entry::Dir(0o755));
        }
    }

    /// Adds (or replaces) an entry at `path`, creating parent folders.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let p = norm(path);
        if p.is_empty() {
            return;
        }
        self.parents(&p);
        self.entries.insert(p, entry);
    }

    /// Adds a folder.
    pub fn dir(&mut self, path: &str) {
        self.add(path, Entry::Dir(0o755));
    }

    /// Adds a file.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.add(path, Entry::File(mode, data));
    }

    /// Whether `path` is present.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(&norm(path))
    }

    /// Total bytes of file contents.
    pub fn payload_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match e {
                Entry::File(_, d) => d.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Number of entries.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Writes the archive in newc format followed by the trailer.
    pub fn write<W: Write>(&self, out: &mut W) -> std::io::Result<u64> {
        let mut written = 0u64;
        for (ino, (path, entry)) in (1u32..).zip(self.entries.iter()) {
            let (mode, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match entry {
                Entry::Dir(m) => (0o040000 | m, &[], 2, (0, 0)),
                Entry::File(m, d) => (0o100000 | m, d.as_slice(), 1, (0, 0)),
                Entry::Symlink(t) => (0o120777, t.as_bytes(), 1, (0, 0)),
                Entry::CharDev(m, maj, min) => (0o020000 | m, &[], 1, (*maj, *min)),
            };
            written += write_member(out, ino, path, mode, nlink, rdev, data)?;
        }
        written += write_member(out, 0, "TRAILER!!!", 0, 1, (0, 0), &[])?;
        Ok(written)
    }
}

fn pad4<W: Write>(out: &mut W, len: u64) -> std::io::Result<u64> {
    let pad = (4 - (len % 4)) % 4;
    out.write_all(&[0u8; 3][..pad as usize])?;
    Ok(pad)
}

fn write_member<W: Write>(
    out: &mut W,
    ino: u32,
    name: &str,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    data: &[u8],
) -> std::io::Result<u64> {
    let header = format!(
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        0,
        0,
        0,
        data.len(),
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() + 1,
        0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let mut n = header.len() as u64 + name.len() as u64 + 1;
    n += pad4(out, n)?;
    out.write_all(data)?;
    n += data.len() as u64;
    n += pad4(out, n)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_aligned_and_parents_exist() {
        let mut a = Archive::new();
        a.file("/bin/tool", 0o755, b"hello".to_vec());
        a.add("dev/console", Entry::CharDev(0o600, 5, 1));
        a.add("lib64/ld.so", Entry::Symlink("/lib/ld.so".into()));
        assert!(a.contains("bin") && a.contains("dev") && a.contains("lib64"));
        let mut out = Vec::new();
        let n = a.write(&mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("070701"));
        assert!(text.contains("bin/tool\0"));
        assert!(text.contains("TRAILER!!!"));
        // "bin" folder comes before "bin/tool".
        assert!(text.find("bin\0").unwrap() < text.find("bin/tool\0").unwrap());
        // The file header records size 5 and mode 0100755.
        let at = text.find("bin/tool\0").unwrap() - 110;
        let hdr = &text[at..at + 110];
        assert_eq!(&hdr[14..22], "000081ED");
        assert_eq!(&hdr[54..62], "00000005");
        // The console device records major 5 minor 1.
        let at = text.find("dev/console\0").unwrap() - 110;
        let hdr = &text[at..at + 110];
        assert_eq!(&hdr[78..86], "00000005");
        assert_eq!(&hdr[86..94], "00000001");
    }

    #[test]
    fn cpio_tool_can_list_it_when_available() {
        let mut a = Archive::new();
        a.file("etc/x", 0o644, b"abc".to_vec());
        let mut out = Vec::new();
        a.write(&mut out).unwrap();
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return; // cpio(1) not installed: the layout test above still ran.
        };
        child.stdin.take().unwrap().write_all(&out).unwrap();
        let o = child.wait_with_output().unwrap();
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(listing.lines().any(|l| l == "etc/x"), "{listing}");
    }
}
