//! The disk image: a GPT with two system slots (A/B) and the shared data partition. Each
//! slot has its own EFI system partition (`AERGO-ESP-A`/`-B`, the unified kernel image at
//! `EFI/BOOT/BOOTX64.EFI`) and read-only system partition (`AERGO-SYSTEM-A`/`-B`, squashfs
//! with the service binaries and their shared libraries, mounted at `/usr`); the ext4 data
//! partition `AERGO-DATA` comes last (init grows it). A fresh image fills slot A only: slot
//! B's partitions are zeros (holes in the sparse image file), written by the first upgrade.
//!
//! Built without root or loop devices: the UKI with `objcopy` from systemd-boot's
//! `linuxx64.efi.stub`, the FAT ESP with mtools (`mformat`, `mmd`, `mcopy`), the squashfs
//! with `mksquashfs`, the ext4 filesystem with `mke2fs -d` into a file; the GPT itself is
//! written by [`aergo_os::sys::gpt`] and the partition images are copied in at their offsets
//! (zero blocks skipped: sparse).

use aergo_os::sys::gpt::{Gpt, Guid, ESP_TYPE, LINUX_TYPE, SECTOR, USR_X86_64_TYPE};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1024 * 1024;
/// GPT name of slot A's ESP (the one a fresh image boots).
pub fn esp_name() -> String {
    aergo_os::slots::esp_label("A")
}

/// GPT name of slot A's system partition.
pub fn system_name() -> String {
    aergo_os::slots::system_label("A")
}

/// Where the partitions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Total image size in bytes.
    pub total: u64,
    /// The table.
    pub gpt: Gpt,
}

impl Layout {
    fn part(&self, i: usize) -> (u64, u64) {
        self.gpt
            .partitions
            .get(i)
            .map(|p| (p.offset_bytes(), p.size_bytes()))
            .unwrap_or((0, 0))
    }
    /// Offset and size of slot A's ESP.
    pub fn esp(&self) -> (u64, u64) {
        self.part(0)
    }
    /// Offset and size of slot A's system partition.
    pub fn system(&self) -> (u64, u64) {
        self.part(1)
    }
    /// Offset and size of slot B's ESP.
    #[cfg(test)]
    pub fn esp_b(&self) -> (u64, u64) {
        self.part(2)
    }
    /// Offset and size of slot B's system partition.
    #[cfg(test)]
    pub fn system_b(&self) -> (u64, u64) {
        self.part(3)
    }
    /// Offset and size of the data partition (the last one).
    pub fn data(&self) -> (u64, u64) {
        self.part(4)
    }
}

/// ESP size for a UKI of `uki_bytes`: room for it plus 25 % and 4 MiB, whole MiB, ≥ 24 MiB
/// (headroom, so a rebuilt image keeps the layout of a persistent disk).
pub fn esp_size(uki_bytes: u64) -> u64 {
    let want = uki_bytes + uki_bytes / 4 + 4 * MIB;
    want.div_ceil(MIB).max(24) * MIB
}

/// System partition size for a squashfs of `bytes`: half again as much, in 16 MiB steps,
/// ≥ 64 MiB (headroom for the binaries to grow without changing the disk layout).
pub fn system_size(bytes: u64) -> u64 {
    let want = bytes + bytes / 2;
    (want.div_ceil(16 * MIB) * 16).max(64) * MIB
}

/// Plans a disk: 1 MiB for the primary GPT, slot A (ESP, system), slot B (the same sizes),
/// the data partition, 1 MiB at the end.
pub fn plan(esp_bytes: u64, system_bytes: u64, data_bytes: u64) -> Result<Layout> {
    use aergo_os::slots::{esp_label, system_label};
    let esp_bytes = esp_bytes.div_ceil(MIB) * MIB;
    let system_bytes = system_bytes.div_ceil(MIB) * MIB;
    let data_bytes = data_bytes.div_ceil(MIB) * MIB;
    let total = MIB + 2 * (esp_bytes + system_bytes) + data_bytes + MIB;
    let (ea, sa, eb, sb) = (
        esp_label("A"),
        system_label("A"),
        esp_label("B"),
        system_label("B"),
    );
    let esp = Guid::parse(ESP_TYPE)?;
    let usr = Guid::parse(USR_X86_64_TYPE)?;
    let gpt = Gpt::layout(
        total,
        &[
            (esp, ea.as_str(), Some(esp_bytes)),
            (usr, sa.as_str(), Some(system_bytes)),
            (esp, eb.as_str(), Some(esp_bytes)),
            (usr, sb.as_str(), Some(system_bytes)),
            (
                Guid::parse(LINUX_TYPE)?,
                aergo_os::paths::DATA_LABEL,
                Some(data_bytes),
            ),
        ],
    )?;
    Ok(Layout { total, gpt })
}

fn run(cmd: &mut Command) -> Result<()> {
    let o = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (run scripts/setup.sh to install it)"))?;
    if !o.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// Builds a unified kernel image with `objcopy`.
pub fn build_uki(
    stub: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    osrel: &str,
    work: &Path,
    out: &Path,
) -> Result<()> {
    let cmdline_file = work.join("cmdline.txt");
    std::fs::write(&cmdline_file, format!("{cmdline}\0"))?;
    let osrel_file = work.join("os-release");
    std::fs::write(&osrel_file, osrel)?;
    let kernel_len = std::fs::metadata(kernel)?.len();
    // Section addresses above the stub's own, kernel at 32 MiB, initrd after it.
    let linux_vma: u64 = 0x200_0000;
    let initrd_vma = (linux_vma + kernel_len).div_ceil(MIB) * MIB + MIB;
    let sec = |name: &str, file: &Path, vma: u64| -> Vec<String> {
        vec![
            "--add-section".into(),
            format!("{name}={}", file.display()),
            "--change-section-vma".into(),
            format!("{name}={vma:#x}"),
        ]
    };
    let mut cmd = Command::new("objcopy");
    cmd.args(sec(".osrel", &osrel_file, 0x20000))
        .args(sec(".cmdline", &cmdline_file, 0x30000))
        .args(sec(".linux", kernel, linux_vma))
        .args(sec(".initrd", initrd, initrd_vma))
        .arg(stub)
        .arg(out);
    run(&mut cmd)
}

/// Makes a FAT ESP image of `size` bytes holding `uki` as `EFI/BOOT/BOOTX64.EFI`.
pub fn build_esp(uki: &Path, size: u64, out: &Path) -> Result<()> {
    let f = File::create(out)?;
    f.set_len(size)?;
    drop(f);
    let img = out.display().to_string();
    run(Command::new("mformat")
        .args(["-i", &img, "-T", &(size / SECTOR).to_string()])
        .args(["-h", "64", "-s", "32", "-v", "AERGO-ESP", "::"]))?;
    run(Command::new("mmd").args(["-i", &img, "::/EFI", "::/EFI/BOOT"]))?;
    run(Command::new("mcopy")
        .args(["-i", &img])
        .arg(uki)
        .arg("::/EFI/BOOT/BOOTX64.EFI"))?;
    Ok(())
}

/// Makes an ext4 image of `size` bytes labelled `AERGO-DATA` populated from `root`.
pub fn build_ext4(root: &Path, size: u64, out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_file(out)?;
    }
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-O", "64bit"])
        .args([
            "-L",
            aergo_os::paths::DATA_LABEL,
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(root)
        .arg(out)
        .arg(format!("{}k", size / 1024)))
}

/// How the system partition's squashfs is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SquashComp {
    /// Not compressed (the default): pages come straight from the disk, and the compressed
    /// image (the download) is smaller than with any squashfs compression.
    None,
    /// LZ4: fast to decompress, ~55 % of the size.
    Lz4,
    /// zstd (`--squashfs-level`): small, fast to decompress.
    Zstd,
    /// xz with the x86 branch filter: ~20 % smaller than zstd -9, slower to decompress
    /// (the level does not apply).
    Xz,
}

/// Makes a read-only squashfs image of `root` (files owned by root).
pub fn build_squashfs(root: &Path, comp: SquashComp, level: u32, out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_file(out)?;
    }
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(root).arg(out).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
        "-no-xattrs",
    ]);
    // 1 MiB blocks: a program's first page faults read (and decompress) 1 MiB at a time, so
    // starting the node takes ~8× fewer synchronous disk reads than with 128 KiB blocks
    // (each costly under emulation); the squashfs is also ~2 % smaller.
    cmd.args(["-b", "1M"]);
    match comp {
        // Nothing is compressed, but the superblock still names a compressor and the kernel
        // refuses to mount one it lacks (mksquashfs's default, gzip, is not in the embedded
        // kernel): name zstd, which every kernel the image boots has.
        SquashComp::None => cmd.args(["-comp", "zstd", "-noI", "-noId", "-noD", "-noF", "-noX"]),
        SquashComp::Lz4 => cmd.args(["-comp", "lz4"]),
        SquashComp::Zstd => cmd.args(["-comp", "zstd", "-Xcompression-level", &level.to_string()]),
        SquashComp::Xz => cmd.args(["-comp", "xz", "-Xbcj", "x86"]),
    };
    run(&mut cmd)
}

/// Copies `src` into `dst` at `offset`, skipping all-zero blocks (sparse output).
pub fn copy_at(src: &Path, dst: &mut File, offset: u64) -> Result<u64> {
    let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or(&[]);
        if chunk.iter().any(|b| *b != 0) {
            dst.seek(SeekFrom::Start(offset + pos))?;
            dst.write_all(chunk)?;
        }
        pos += n as u64;
    }
    Ok(pos)
}

/// Writes the whole disk image.
pub fn assemble(layout: &Layout, esp: &Path, system: &Path, data: &Path, out: &Path) -> Result<()> {
    let (esp_off, esp_len) = layout.esp();
    let (sys_off, sys_len) = layout.system();
    let (data_off, data_len) = layout.data();
    for (img, len) in [(esp, esp_len), (system, sys_len), (data, data_len)] {
        if std::fs::metadata(img)?.len() > len {
            bail!(
                "partition image {} larger than its partition",
                img.display()
            );
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_extension("img.partial");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.set_len(layout.total)?;
    layout.gpt.write(&mut f)?;
    copy_at(esp, &mut f, esp_off)?;
    copy_at(system, &mut f, sys_off)?;
    copy_at(data, &mut f, data_off)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// What [`update_disk`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskUpdate {
    /// A new disk was made from the image.
    Created,
    /// The boot and system partitions were refreshed; the data partition kept.
    BootRefreshed,
    /// The layouts differ: the old disk was moved aside and a new one made.
    Replaced(std::path::PathBuf),
}

/// Keeps a persistent VM disk in step with a freshly built image: creates it (sparse,
/// `size` bytes, init grows the data partition at boot) or, when the partition layout
/// matches, copies only the new slot A (ESP and system partition) into it so the chain data
/// survives rebuilds (a disk that was upgraded to slot B keeps booting B: use
/// `aergo os upgrade` with a bundle, or `--fresh`).
pub fn update_disk(image: &Path, disk: &Path, size: u64) -> Result<DiskUpdate> {
    let img_len = std::fs::metadata(image)?.len();
    let create = |disk: &Path| -> Result<()> {
        let tmp = disk.with_extension("partial");
        std::fs::copy(image, &tmp)?;
        let f = std::fs::OpenOptions::new().write(true).open(&tmp)?;
        f.set_len(size.max(img_len))?;
        f.sync_all()?;
        std::fs::rename(&tmp, disk)?;
        Ok(())
    };
    if !disk.exists() {
        create(disk)?;
        return Ok(DiskUpdate::Created);
    }
    let mut fi = File::open(image)?;
    let gi = Gpt::read(&mut fi, img_len)?;
    let disk_len = std::fs::metadata(disk)?.len();
    let mut fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)?;
    let same = match Gpt::read(&mut fd, disk_len) {
        Ok(gd) => {
            let span = |g: &Gpt, name: &str| g.find(name).map(|p| (p.first_lba, p.last_lba));
            let start = |g: &Gpt, name: &str| g.find(name).map(|p| p.first_lba);
            let data = aergo_os::paths::DATA_LABEL;
            span(&gi, &esp_name()) == span(&gd, &esp_name())
                && span(&gi, &system_name()) == span(&gd, &system_name())
                && start(&gi, data).is_some()
                && start(&gi, data) == start(&gd, data)
        }
        Err(_) => false,
    };
    if !same {
        drop(fd);
        let old = disk.with_extension("img.old");
        std::fs::rename(disk, &old)?;
        create(disk)?;
        return Ok(DiskUpdate::Replaced(old));
    }
    for name in [esp_name(), system_name()] {
        let part = gi
            .find(&name)
            .with_context(|| format!("image has no {name} partition"))?
            .clone();
        let mut buf = vec![0u8; usize::try_from(part.size_bytes())?];
        fi.seek(SeekFrom::Start(part.offset_bytes()))?;
        fi.read_exact(&mut buf)?;
        fd.seek(SeekFrom::Start(part.offset_bytes()))?;
        fd.write_all(&buf)?;
    }
    fd.sync_all()?;
    Ok(DiskUpdate::BootRefreshed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A position in an image buffer.
    fn at(v: u64) -> usize {
        usize::try_from(v).unwrap()
    }

    #[test]
    fn layout_is_aligned_and_ordered() {
        let l = plan(esp_size(12 * MIB), system_size(27 * MIB), 32 * MIB).unwrap();
        let (eo, el) = l.esp();
        let (so, sl) = l.system();
        let (d_o, dl) = l.data();
        assert_eq!(eo, MIB);
        assert_eq!(el, esp_size(12 * MIB));
        assert_eq!(so, eo + el);
        assert_eq!(sl, 64 * MIB);
        assert_eq!(l.esp_b(), (so + sl, el));
        assert_eq!(l.system_b(), (so + sl + el, sl));
        assert_eq!(d_o, so + 2 * sl + el);
        assert_eq!(dl, 32 * MIB);
        for off in [eo, so, d_o] {
            assert_eq!(off % MIB, 0);
        }
        assert!(d_o + dl <= l.total - 33 * SECTOR);
        let names: Vec<&str> = l.gpt.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "AERGO-ESP-A",
                "AERGO-SYSTEM-A",
                "AERGO-ESP-B",
                "AERGO-SYSTEM-B",
                "AERGO-DATA"
            ]
        );
        assert_eq!(
            l.gpt.partitions[2].type_guid,
            Guid::parse(ESP_TYPE).unwrap()
        );
        assert_eq!(
            l.gpt.partitions[0].type_guid,
            Guid::parse(ESP_TYPE).unwrap()
        );
        assert_eq!(
            l.gpt.partitions[1].type_guid,
            Guid::parse(USR_X86_64_TYPE).unwrap()
        );
        // The default image fits 250 MB raw (slot B is zeros: a hole in the sparse file,
        // nothing in the compressed image).
        assert!(l.total <= 250_000_000, "{}", l.total);
    }

    #[test]
    fn persistent_disk_keeps_data_and_refreshes_boot_and_system() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |fill: u8, name: &str| {
            let esp = dir.path().join(format!("esp-{name}"));
            let sys = dir.path().join(format!("sys-{name}"));
            let data = dir.path().join(format!("data-{name}"));
            std::fs::write(&esp, vec![fill; 4096]).unwrap();
            std::fs::write(&sys, vec![fill ^ 0xFF; 4096]).unwrap();
            std::fs::write(&data, vec![0x11u8; 4096]).unwrap();
            let img = dir.path().join(format!("{name}.img"));
            assemble(
                &plan(2 * MIB, 3 * MIB, 4 * MIB).unwrap(),
                &esp,
                &sys,
                &data,
                &img,
            )
            .unwrap();
            img
        };
        let v1 = mk(0xA1, "v1");
        let disk = dir.path().join("disk.img");
        assert_eq!(
            update_disk(&v1, &disk, 64 * MIB).unwrap(),
            DiskUpdate::Created
        );
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 * MIB);
        // The VM wrote chain data into its data partition.
        let l = plan(2 * MIB, 3 * MIB, 4 * MIB).unwrap();
        let (d_o, _) = l.data();
        let (eo, _) = l.esp();
        let (so, _) = l.system();
        {
            let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
            f.seek(SeekFrom::Start(d_o)).unwrap();
            f.write_all(b"CHAIN").unwrap();
        }
        let v2 = mk(0xB2, "v2");
        assert_eq!(
            update_disk(&v2, &disk, 64 * MIB).unwrap(),
            DiskUpdate::BootRefreshed
        );
        let bytes = std::fs::read(&disk).unwrap();
        let (eo, so, d_o) = (at(eo), at(so), at(d_o));
        assert_eq!(bytes[eo], 0xB2);
        assert_eq!(bytes[so], 0xB2 ^ 0xFF);
        assert_eq!(&bytes[d_o..d_o + 5], b"CHAIN");
        // A different layout moves the old disk aside.
        let esp = dir.path().join("esp-v1");
        let sys = dir.path().join("sys-v1");
        let data = dir.path().join("data-v1");
        let v3 = dir.path().join("v3.img");
        assemble(
            &plan(2 * MIB, 5 * MIB, 4 * MIB).unwrap(),
            &esp,
            &sys,
            &data,
            &v3,
        )
        .unwrap();
        assert!(matches!(
            update_disk(&v3, &disk, 64 * MIB).unwrap(),
            DiskUpdate::Replaced(_)
        ));
    }

    #[test]
    fn partition_sizes_have_headroom() {
        assert_eq!(esp_size(0), 24 * MIB);
        let s = esp_size(40 * MIB);
        assert!(s >= 50 * MIB && s.is_multiple_of(MIB));
        assert_eq!(system_size(0), 64 * MIB);
        assert_eq!(system_size(27 * MIB), 64 * MIB);
        let s = system_size(60 * MIB);
        assert!(s >= 90 * MIB && s.is_multiple_of(16 * MIB), "{s}");
    }

    #[test]
    fn assemble_places_partitions_at_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let esp = dir.path().join("esp");
        let sys = dir.path().join("sys");
        let data = dir.path().join("data");
        std::fs::write(&esp, vec![0xAAu8; 4096]).unwrap();
        std::fs::write(&sys, vec![0x77u8; 4096]).unwrap();
        let mut d = vec![0u8; 3 * 1024 * 1024];
        d[2 * 1024 * 1024] = 0x55;
        std::fs::write(&data, &d).unwrap();
        let l = plan(2 * MIB, 2 * MIB, 4 * MIB).unwrap();
        let out = dir.path().join("disk.img");
        assemble(&l, &esp, &sys, &data, &out).unwrap();
        let img = std::fs::read(&out).unwrap();
        assert_eq!(img.len() as u64, l.total);
        let (eo, _) = l.esp();
        let (so, _) = l.system();
        let (d_o, _) = l.data();
        assert_eq!(img[at(eo)], 0xAA);
        assert_eq!(img[at(so)], 0x77);
        assert_eq!(img[at(d_o + 2 * MIB)], 0x55);
        let mut f = File::open(&out).unwrap();
        let back = Gpt::read(&mut f, l.total).unwrap();
        assert_eq!(back.find("AERGO-DATA").unwrap().offset_bytes(), d_o);
        assert_eq!(back.find("AERGO-SYSTEM-A").unwrap().offset_bytes(), so);
        // A system partition image larger than its partition is refused.
        std::fs::write(&sys, vec![0x77u8; at(3 * MIB)]).unwrap();
        assert!(assemble(&l, &esp, &sys, &data, &out).is_err());
    }

    #[test]
    fn squashfs_builds_when_mksquashfs_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/hello"), b"hello").unwrap();
        let out = dir.path().join("sys.sqfs");
        // The superblock's compression id (offset 20): xz 4, zstd 6.
        for (comp, id) in [(SquashComp::Zstd, 6u8), (SquashComp::Xz, 4)] {
            match build_squashfs(&root, comp, 3, &out) {
                Ok(()) => {
                    let head = std::fs::read(&out).unwrap();
                    assert_eq!(&head[..4], b"hsqs");
                    assert_eq!(head[20], id, "{comp:?}");
                }
                // Without squashfs-tools (scripts/setup.sh installs it) only CI must fail.
                Err(e) => assert!(std::env::var("CI").is_err(), "{e:#}"),
            }
        }
    }
}
