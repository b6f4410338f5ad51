//! The data partition: found by its GPT label `AERGO-DATA`, grown to fill the disk on first
//! boot (GPT rewritten, kernel re-reads the table, then an online ext4 resize through
//! `EXT4_IOC_RESIZE_FS`), mounted at `/data`. A partition without a filesystem is formatted
//! only when it is blank and the config allows it; one with data never is.

use aergo_os::sys::gpt::Gpt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKRRPART: libc::c_ulong = 0x125F;
const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

/// `struct blkpg_partition` (linux/blkpg.h); start and length in bytes.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc::c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}
const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
/// Grow only when at least this much space is unused.
pub const MIN_GROW: u64 = 16 * 1024 * 1024;

/// A partition found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartDev {
    /// Partition device name (`vda2`).
    pub name: String,
    /// Whole-disk device name (`vda`).
    pub disk: String,
}

impl PartDev {
    /// `/dev/<name>`.
    pub fn dev(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }
    /// `/dev/<disk>`.
    pub fn disk_dev(&self) -> PathBuf {
        Path::new("/dev").join(&self.disk)
    }
}

/// Reads `KEY=value` from a uevent file's text.
pub fn uevent_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

/// Finds the partition with GPT name `label` under `sys_block` (`/sys/class/block`).
pub fn find_partition(sys_block: &Path, label: &str) -> Option<PartDev> {
    let entries = std::fs::read_dir(sys_block).ok()?;
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path().join("uevent")).unwrap_or_default();
        if uevent_value(&text, "DEVTYPE").as_deref() != Some("partition") {
            continue;
        }
        if uevent_value(&text, "PARTNAME").as_deref() != Some(label) {
            continue;
        }
        let name = uevent_value(&text, "DEVNAME")?;
        // The parent folder of the partition in sysfs is the disk.
        let real = std::fs::canonicalize(e.path()).ok()?;
        let disk = real.parent()?.file_name()?.to_string_lossy().to_string();
        return Some(PartDev { name, disk });
    }
    None
}

/// Waits for the partition to appear (the disk driver probes asynchronously).
pub fn wait_partition(label: &str, timeout: Duration) -> Option<PartDev> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = find_partition(Path::new("/sys/class/block"), label) {
            if p.dev().exists() {
                return Some(p);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Size of a block device in bytes.
pub fn device_size(f: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes a u64.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Facts from an ext4 superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Super {
    /// Block size in bytes.
    pub block_size: u64,
    /// Blocks in the filesystem.
    pub blocks: u64,
    /// Journal needs recovery (mounted or not cleanly unmounted).
    pub needs_recovery: bool,
}

/// Parses the superblock (the 1024 bytes at offset 1024); `None` when it is not ext2/3/4.
pub fn parse_super(sb: &[u8]) -> Option<Ext4Super> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(sb.get(at..at + 4)?.try_into().ok()?))
    };
    let magic = u16::from_le_bytes(sb.get(0x38..0x3A)?.try_into().ok()?);
    if magic != 0xEF53 {
        return None;
    }
    let log = u32_at(0x18)?;
    let incompat = u32_at(0x60)?;
    let lo = u64::from(u32_at(0x04)?);
    let hi = if incompat & 0x80 != 0 {
        u64::from(u32_at(0x150)?)
    } else {
        0
    };
    Some(Ext4Super {
        block_size: 1024u64 << log.min(16),
        blocks: (hi << 32) | lo,
        needs_recovery: incompat & 0x4 != 0,
    })
}

/// Reads the ext4 superblock at `offset` of a file or device.
pub fn read_super<R: Read + Seek>(dev: &mut R, offset: u64) -> io::Result<Option<Ext4Super>> {
    let mut sb = vec![0u8; 1024];
    dev.seek(SeekFrom::Start(offset + 1024))?;
    dev.read_exact(&mut sb)?;
    Ok(parse_super(&sb))
}

/// Whether the first MiB of the device is all zeros (a blank partition).
pub fn is_blank<R: Read + Seek>(dev: &mut R) -> io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    dev.seek(SeekFrom::Start(0))?;
    let n = dev.read(&mut buf)?;
    Ok(buf.get(..n).unwrap_or(&[]).iter().all(|b| *b == 0))
}

/// Reads a number from a sysfs attribute of the partition (`partition`, `start`).
fn sys_number(part: &PartDev, attr: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(Path::new("/sys/class/block").join(&part.name).join(attr))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("bad sysfs {attr} `{}`", text.trim())))
}

/// Tells the kernel the partition's new size with `BLKPG_RESIZE_PARTITION`, which works
/// while other partitions of the disk are mounted (BLKRRPART would fail with EBUSY).
fn kernel_resize_partition(disk: &File, part: &PartDev, new_len: u64) -> io::Result<()> {
    let pno = sys_number(part, "partition")?;
    let start = sys_number(part, "start")? * 512;
    let mut p = BlkpgPartition {
        start: i64::try_from(start).map_err(io::Error::other)?,
        length: i64::try_from(new_len).map_err(io::Error::other)?,
        pno: libc::c_int::try_from(pno).map_err(io::Error::other)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: libc::c_int::try_from(std::mem::size_of::<BlkpgPartition>())
            .map_err(io::Error::other)?,
        data: (&mut p as *mut BlkpgPartition).cast(),
    };
    // SAFETY: BLKPG reads a blkpg_ioctl_arg whose data points at a live blkpg_partition.
    let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG, &mut arg) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Grows the GPT partition to the end of the disk and tells the kernel (resize in place,
/// else a full re-read of the table). Returns the new partition size when it grew.
pub fn grow_partition(part: &PartDev, label: &str) -> io::Result<Option<u64>> {
    let mut disk = OpenOptions::new()
        .read(true)
        .write(true)
        .open(part.disk_dev())?;
    let size = device_size(&disk)?;
    let grown = Gpt::grow_last(&mut disk, size, label, MIN_GROW)
        .map_err(|e| io::Error::other(e.to_string()))?;
    if let Some(new_len) = grown {
        disk.sync_all()?;
        if let Err(e) = kernel_resize_partition(&disk, part, new_len) {
            // SAFETY: BLKRRPART takes no argument.
            let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKRRPART, 0) };
            if rc < 0 {
                let rr = io::Error::last_os_error();
                return Err(io::Error::other(format!(
                    "the table was grown but the kernel was not told (BLKPG: {e}; BLKRRPART: {rr}); it takes effect at the next boot"
                )));
            }
        }
    }
    Ok(grown)
}

/// Grows the mounted ext4 filesystem at `mount` to `blocks` blocks (online).
pub fn resize_fs(mount: &str, blocks: u64) -> io::Result<()> {
    let dir = File::open(mount)?;
    let n: u64 = blocks;
    // SAFETY: EXT4_IOC_RESIZE_FS reads a u64 block count.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS, &n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the remote-control token file when absent; returns the token.
pub fn ensure_token(path: &Path) -> io::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if t.len() >= 32 {
            return Ok(t);
        }
    }
    let mut b = [0u8; 32];
    crate::sys::random_bytes(&mut b)?;
    let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    fsync_dir(path)?;
    Ok(token)
}

/// Makes a rename or create in `path`'s folder durable (a power cut may follow).
pub fn fsync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn uevent_parsing() {
        let t =
            "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=AERGO-DATA\n";
        assert_eq!(uevent_value(t, "PARTNAME").as_deref(), Some("AERGO-DATA"));
        assert_eq!(uevent_value(t, "DEVNAME").as_deref(), Some("vda2"));
        assert_eq!(uevent_value(t, "NOPE"), None);
    }

    #[test]
    fn finds_partition_in_a_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("devices/vda");
        let part = disk.join("vda2");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(
            part.join("uevent"),
            "DEVNAME=vda2\nDEVTYPE=partition\nPARTNAME=AERGO-DATA\n",
        )
        .unwrap();
        std::fs::create_dir_all(disk.join("vda1")).unwrap();
        std::fs::write(
            disk.join("vda1/uevent"),
            "DEVNAME=vda1\nDEVTYPE=partition\nPARTNAME=ESP\n",
        )
        .unwrap();
        let class = dir.path().join("class");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&part, class.join("vda2")).unwrap();
        std::os::unix::fs::symlink(disk.join("vda1"), class.join("vda1")).unwrap();
        let p = find_partition(&class, "AERGO-DATA").unwrap();
        assert_eq!(
            p,
            PartDev {
                name: "vda2".into(),
                disk: "vda".into()
            }
        );
        assert!(find_partition(&class, "OTHER").is_none());
    }

    #[test]
    fn superblock_of_a_real_mke2fs_image() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        let ok = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "64bit"])
            .arg(&img)
            .arg("16M")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            // e2fsprogs missing: the parser is still covered by the blank test below.
            return;
        }
        let mut f = File::open(&img).unwrap();
        let sb = read_super(&mut f, 0).unwrap().unwrap();
        assert_eq!(sb.block_size, 4096);
        assert_eq!(sb.blocks, 4096);
        assert!(!sb.needs_recovery);
        assert!(!is_blank(&mut f).unwrap());
    }

    #[test]
    fn blank_and_non_ext4() {
        let mut c = std::io::Cursor::new(vec![0u8; 4 << 20]);
        assert!(is_blank(&mut c).unwrap());
        assert_eq!(read_super(&mut c, 0).unwrap(), None);
    }

    #[test]
    fn token_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etc/init.token");
        let t = ensure_token(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(ensure_token(&p).unwrap(), t);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
