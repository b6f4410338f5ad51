//! GUID partition tables: written by `aergo-image` for the appliance disk and grown in place
//! by `aergo-init` when the disk is larger than the image (the last partition is extended to
//! the end of the disk and the backup table moved there).
//!
//! Works on any `Read + Write + Seek` (a file in tests and at build time, a block device on
//! the appliance). Sector size is 512 bytes.

use std::io::{Read, Seek, SeekFrom, Write};

/// Sector size used by the appliance image.
pub const SECTOR: u64 = 512;
/// [`SECTOR`] as a buffer length.
const SECTOR_BYTES: usize = 512;
const _: () = assert!(SECTOR_BYTES as u64 == SECTOR);
/// Number of partition entries in the table.
pub const ENTRIES: u32 = 128;
/// Size of one partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors occupied by the entry array (128 * 128 / 512).
pub const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;
/// Partition alignment in sectors (1 MiB).
pub const ALIGN: u64 = 2048;
/// EFI system partition type GUID.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Linux filesystem data type GUID.
pub const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// Linux `/usr` partition for x86-64 (the Discoverable Partitions Specification's type):
/// the appliance's read-only system partition.
pub const USR_X86_64_TYPE: &str = "8484680C-9521-48C6-9C11-B0720656F69E";

/// Errors reading or writing a GPT.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// I/O on the disk failed.
    #[error("gpt i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The disk has no valid GPT.
    #[error("no valid GPT: {0}")]
    Invalid(String),
    /// The requested layout does not fit.
    #[error("layout does not fit: {0}")]
    Layout(String),
}

/// A 16-byte GUID in on-disk (mixed-endian) byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses the textual form `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
    pub fn parse(s: &str) -> Result<Self, GptError> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return Err(GptError::Invalid(format!("bad GUID {s}")));
        }
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            let pair = hex
                .get(i * 2..i * 2 + 2)
                .ok_or_else(|| GptError::Invalid(format!("bad GUID {s}")))?;
            *out = u8::from_str_radix(pair, 16)
                .map_err(|_| GptError::Invalid(format!("bad GUID {s}")))?;
        }
        // First three fields are little-endian on disk.
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        Ok(Guid(b))
    }

    /// A random (version 4) GUID from the kernel's random source.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        b[7] = (b[7] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(b)
    }
}

// The fallback takes bytes of the time and of the index: truncation to u8 is the point.
#[allow(clippy::cast_possible_truncation)]
fn fill_random(buf: &mut [u8]) {
    // SAFETY: getrandom(2) writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 || (n as usize) < buf.len() {
        // Fallback: time-derived bytes (uniqueness, not secrecy, is what GUIDs need).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Type GUID.
    pub type_guid: Guid,
    /// Unique GUID.
    pub guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Attribute bits.
    pub attrs: u64,
    /// Partition name (GPT label), e.g. `AERGO-DATA`.
    pub name: String,
}

impl Partition {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
    /// Byte offset on the disk.
    pub fn offset_bytes(&self) -> u64 {
        self.first_lba * SECTOR
    }
}

/// A whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Disk GUID.
    pub disk_guid: Guid,
    /// Disk size in sectors.
    pub disk_sectors: u64,
    /// Partitions in table order.
    pub partitions: Vec<Partition>,
}

/// CRC-32 (IEEE 802.3), as used by GPT.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(s) = buf.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    if let Some(s) = buf.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put(buf: &mut [u8], at: usize, v: &[u8]) {
    if let Some(s) = buf.get_mut(at..at + v.len()) {
        s.copy_from_slice(v);
    }
}
fn get_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}
fn get_u64(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}
fn get_guid(buf: &[u8], at: usize) -> Guid {
    let mut g = [0u8; 16];
    if let Some(s) = buf.get(at..at + 16) {
        g.copy_from_slice(s);
    }
    Guid(g)
}

impl Gpt {
    /// First usable sector.
    pub fn first_usable(&self) -> u64 {
        2 + ENTRY_SECTORS
    }
    /// Last usable sector.
    pub fn last_usable(&self) -> u64 {
        self.disk_sectors.saturating_sub(2 + ENTRY_SECTORS)
    }

    /// Lays out partitions of the given sizes (bytes; the last may be `None` = rest of
    /// disk) aligned to 1 MiB on a disk of `disk_bytes`.
    pub fn layout(disk_bytes: u64, parts: &[(Guid, &str, Option<u64>)]) -> Result<Self, GptError> {
        let mut gpt = Gpt {
            disk_guid: Guid::random(),
            disk_sectors: disk_bytes / SECTOR,
            partitions: Vec::new(),
        };
        let last_usable = gpt.last_usable();
        let mut next = ALIGN;
        for (type_guid, name, size) in parts {
            let first = next.div_ceil(ALIGN) * ALIGN;
            let last = match size {
                Some(bytes) => first + bytes.div_ceil(SECTOR) - 1,
                None => last_usable,
            };
            if last > last_usable || last < first {
                return Err(GptError::Layout(format!(
                    "partition {name} ends at sector {last}, disk's last usable is {last_usable}"
                )));
            }
            gpt.partitions.push(Partition {
                type_guid: *type_guid,
                guid: Guid::random(),
                first_lba: first,
                last_lba: last,
                attrs: 0,
                name: (*name).to_string(),
            });
            next = last + 1;
        }
        Ok(gpt)
    }

    fn entries_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate().take(ENTRIES as usize) {
            let at = i * ENTRY_SIZE as usize;
            put(&mut buf, at, &p.type_guid.0);
            put(&mut buf, at + 16, &p.guid.0);
            put_u64(&mut buf, at + 32, p.first_lba);
            put_u64(&mut buf, at + 40, p.last_lba);
            put_u64(&mut buf, at + 48, p.attrs);
            for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
                put(&mut buf, at + 56 + j * 2, &unit.to_le_bytes());
            }
        }
        buf
    }

    fn header_bytes(&self, primary: bool, entries_crc: u32) -> Vec<u8> {
        let last = self.disk_sectors - 1;
        let (my, alt, entries_lba) = if primary {
            (1, last, 2)
        } else {
            (last, 1, last - ENTRY_SECTORS)
        };
        let mut h = vec![0u8; SECTOR_BYTES];
        put(&mut h, 0, b"EFI PART");
        put_u32(&mut h, 8, 0x0001_0000);
        put_u32(&mut h, 12, 92);
        put_u64(&mut h, 24, my);
        put_u64(&mut h, 32, alt);
        put_u64(&mut h, 40, self.first_usable());
        put_u64(&mut h, 48, self.last_usable());
        put(&mut h, 56, &self.disk_guid.0);
        put_u64(&mut h, 72, entries_lba);
        put_u32(&mut h, 80, ENTRIES);
        put_u32(&mut h, 84, ENTRY_SIZE);
        put_u32(&mut h, 88, entries_crc);
        let crc = crc32(h.get(0..92).unwrap_or(&[]));
        put_u32(&mut h, 16, crc);
        h
    }

    fn protective_mbr(&self) -> Vec<u8> {
        let mut m = vec![0u8; SECTOR_BYTES];
        let size = (self.disk_sectors - 1).min(0xFFFF_FFFF) as u32;
        put(
            &mut m,
            446,
            &[0x00, 0x00, 0x02, 0x00, 0xEE, 0xFF, 0xFF, 0xFF],
        );
        put_u32(&mut m, 454, 1);
        put_u32(&mut m, 458, size);
        put(&mut m, 510, &[0x55, 0xAA]);
        m
    }

    /// Writes the protective MBR, primary and backup tables.
    pub fn write<W: Write + Seek>(&self, disk: &mut W) -> Result<(), GptError> {
        if self.disk_sectors < 2 * (2 + ENTRY_SECTORS) + 1 {
            return Err(GptError::Layout("disk too small".into()));
        }
        let entries = self.entries_bytes();
        let ecrc = crc32(&entries);
        let last = self.disk_sectors - 1;
        disk.seek(SeekFrom::Start(0))?;
        disk.write_all(&self.protective_mbr())?;
        disk.write_all(&self.header_bytes(true, ecrc))?;
        disk.write_all(&entries)?;
        disk.seek(SeekFrom::Start((last - ENTRY_SECTORS) * SECTOR))?;
        disk.write_all(&entries)?;
        disk.write_all(&self.header_bytes(false, ecrc))?;
        disk.flush()?;
        Ok(())
    }

    /// Reads the primary table of a disk of `disk_bytes`.
    pub fn read<R: Read + Seek>(disk: &mut R, disk_bytes: u64) -> Result<Self, GptError> {
        let mut h = vec![0u8; SECTOR_BYTES];
        disk.seek(SeekFrom::Start(SECTOR))?;
        disk.read_exact(&mut h)?;
        if h.get(0..8) != Some(b"EFI PART".as_slice()) {
            return Err(GptError::Invalid("no EFI PART signature at LBA 1".into()));
        }
        let hsize = get_u32(&h, 12) as usize;
        if !(92..=SECTOR_BYTES).contains(&hsize) {
            return Err(GptError::Invalid(format!("header size {hsize}")));
        }
        let want = get_u32(&h, 16);
        let mut hc = h.get(0..hsize).unwrap_or(&[]).to_vec();
        put_u32(&mut hc, 16, 0);
        if crc32(&hc) != want {
            return Err(GptError::Invalid("header CRC mismatch".into()));
        }
        let n = get_u32(&h, 80);
        let esz = get_u32(&h, 84);
        if n == 0 || n > 1024 || !(128..=1024).contains(&esz) {
            return Err(GptError::Invalid(format!("{n} entries of {esz} bytes")));
        }
        let mut entries = vec![0u8; (n * esz) as usize];
        disk.seek(SeekFrom::Start(get_u64(&h, 72) * SECTOR))?;
        disk.read_exact(&mut entries)?;
        if crc32(&entries) != get_u32(&h, 88) {
            return Err(GptError::Invalid("entries CRC mismatch".into()));
        }
        let mut partitions = Vec::new();
        for i in 0..n as usize {
            let at = i * esz as usize;
            let type_guid = get_guid(&entries, at);
            if type_guid == Guid::default() {
                continue;
            }
            let units: Vec<u16> = (0..36)
                .map(|j| {
                    let b = entries
                        .get(at + 56 + j * 2..at + 58 + j * 2)
                        .unwrap_or(&[0, 0]);
                    u16::from_le_bytes([
                        b.first().copied().unwrap_or(0),
                        b.get(1).copied().unwrap_or(0),
                    ])
                })
                .take_while(|u| *u != 0)
                .collect();
            partitions.push(Partition {
                type_guid,
                guid: get_guid(&entries, at + 16),
                first_lba: get_u64(&entries, at + 32),
                last_lba: get_u64(&entries, at + 40),
                attrs: get_u64(&entries, at + 48),
                name: String::from_utf16_lossy(&units),
            });
        }
        Ok(Gpt {
            disk_guid: get_guid(&h, 56),
            disk_sectors: disk_bytes / SECTOR,
            partitions,
        })
    }

    /// The partition labelled `name`.
    pub fn find(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// If the partition `name` is the last one on the disk and the disk has at least
    /// `min_gain` bytes beyond it, extends it to the end of the disk (aligned down to 1 MiB)
    /// and rewrites both tables. Returns the new partition size in bytes, or `None` when
    /// nothing changed.
    pub fn grow_last<D: Read + Write + Seek>(
        disk: &mut D,
        disk_bytes: u64,
        name: &str,
        min_gain: u64,
    ) -> Result<Option<u64>, GptError> {
        let mut gpt = Self::read(disk, disk_bytes)?;
        let max_last = gpt.partitions.iter().map(|p| p.last_lba).max().unwrap_or(0);
        let last_usable = gpt.last_usable();
        let aligned_end = ((last_usable + 1) / ALIGN) * ALIGN;
        let Some(part) = gpt.partitions.iter_mut().find(|p| p.name == name) else {
            return Err(GptError::Invalid(format!("no partition named {name}")));
        };
        if part.last_lba != max_last {
            return Ok(None);
        }
        let new_last = aligned_end.saturating_sub(1);
        if new_last <= part.last_lba || (new_last - part.last_lba) * SECTOR < min_gain {
            return Ok(None);
        }
        part.last_lba = new_last;
        let size = part.size_bytes();
        gpt.write(disk)?;
        Ok(Some(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn disk(bytes: u64) -> Cursor<Vec<u8>> {
        Cursor::new(vec![0u8; usize::try_from(bytes).unwrap()])
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_mixed_endian() {
        let g = Guid::parse(ESP_TYPE).unwrap();
        assert_eq!(
            g.0,
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert!(Guid::parse("nope").is_err());
    }

    #[test]
    fn layout_write_read_round_trip() {
        let size = 8 * 1024 * 1024;
        let esp = Guid::parse(ESP_TYPE).unwrap();
        let lin = Guid::parse(LINUX_TYPE).unwrap();
        let gpt = Gpt::layout(
            size,
            &[(esp, "ESP", Some(3 << 20)), (lin, "AERGO-DATA", None)],
        )
        .unwrap();
        assert_eq!(gpt.partitions[0].first_lba, 2048);
        assert_eq!(gpt.partitions[0].size_bytes(), 3 << 20);
        assert_eq!(gpt.partitions[1].first_lba, 2048 + 6144);
        assert_eq!(gpt.partitions[1].last_lba, size / 512 - 34);
        let mut d = disk(size);
        gpt.write(&mut d).unwrap();
        let back = Gpt::read(&mut d, size).unwrap();
        assert_eq!(back, gpt);
        assert_eq!(back.find("AERGO-DATA").unwrap().type_guid, lin);
        // Protective MBR.
        assert_eq!(d.get_ref()[450], 0xEE);
        assert_eq!(&d.get_ref()[510..512], &[0x55, 0xAA]);
        // Backup header at the last sector.
        let last = usize::try_from(size - 512).unwrap();
        assert_eq!(&d.get_ref()[last..last + 8], b"EFI PART");
    }

    #[test]
    fn layout_that_does_not_fit_is_an_error() {
        let lin = Guid::parse(LINUX_TYPE).unwrap();
        assert!(Gpt::layout(4 << 20, &[(lin, "A", Some(8 << 20))]).is_err());
    }

    #[test]
    fn corrupt_header_is_detected() {
        let size = 4 * 1024 * 1024;
        let lin = Guid::parse(LINUX_TYPE).unwrap();
        let gpt = Gpt::layout(size, &[(lin, "D", None)]).unwrap();
        let mut d = disk(size);
        gpt.write(&mut d).unwrap();
        d.get_mut()[512 + 40] ^= 1;
        assert!(Gpt::read(&mut d, size).is_err());
    }

    #[test]
    fn grow_extends_last_partition_and_moves_backup() {
        let small = 8u64 << 20;
        let big = 32u64 << 20;
        let esp = Guid::parse(ESP_TYPE).unwrap();
        let lin = Guid::parse(LINUX_TYPE).unwrap();
        let gpt = Gpt::layout(
            small,
            &[
                (esp, "ESP", Some(2 << 20)),
                (lin, "AERGO-DATA", Some(4 << 20)),
            ],
        )
        .unwrap();
        let mut d = disk(small);
        gpt.write(&mut d).unwrap();
        d.get_mut().resize(usize::try_from(big).unwrap(), 0);
        let new = Gpt::grow_last(&mut d, big, "AERGO-DATA", 1 << 20)
            .unwrap()
            .unwrap();
        let back = Gpt::read(&mut d, big).unwrap();
        let p = back.find("AERGO-DATA").unwrap();
        assert_eq!(p.size_bytes(), new);
        assert_eq!((p.last_lba + 1) % ALIGN, 0);
        assert!(p.last_lba <= back.last_usable());
        assert!(new > 20 << 20);
        assert_eq!(back.find("ESP"), gpt.find("ESP"));
        let last = usize::try_from(big - 512).unwrap();
        assert_eq!(&d.get_ref()[last..last + 8], b"EFI PART");
        // Second call: nothing left to grow.
        assert_eq!(
            Gpt::grow_last(&mut d, big, "AERGO-DATA", 1 << 20).unwrap(),
            None
        );
    }
}
