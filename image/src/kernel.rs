//! Finding the kernel to boot and the modules the appliance needs: `--kernel embedded` (the
//! appliance's own kernel, everything built in: [`crate::embedded`]), `--kernel debian`
//! (Debian's `linux-image-amd64`: the newest `/boot/vmlinuz-*` whose module folder exists)
//! or `--kernel PATH` (a `vmlinuz-<release>` with its `/lib/modules/<release>`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Modules the appliance loads (dependencies are added from `modules.dep`).
/// Missing ones are skipped with a warning (some may be built in).
pub const WANTED_MODULES: &[&str] = &[
    // virtio (QEMU and clouds)
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_scsi",
    "virtio_console",
    "virtio_rng",
    // storage on real servers
    "nvme",
    "ahci",
    "sd_mod",
    // filesystems (crc32c first: ext4's checksum driver; squashfs: the system partition)
    "crc32c_intel",
    "crc32c_generic",
    "ext4",
    "squashfs",
    // common server NICs
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    // ACPI power button and its input events; watchdogs (QEMU's i6300esb, Intel TCO)
    "button",
    "evdev",
    "i6300esb",
    "iTCO_wdt",
    // UEFI variables: which slot booted, BootNext/BootOrder for A/B upgrades
    "efivarfs",
];

/// Modules loaded on every boot whatever the hardware (the rest are loaded by init only when
/// a device's modalias matches one of their aliases).
pub const ALWAYS_MODULES: &[&str] = &[
    "squashfs",
    "crc32c_intel",
    "crc32c_generic",
    "ext4",
    "evdev",
    "efivarfs",
];

/// Which kernel `--kernel` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The appliance's own kernel, built (or reused) from the fragment in `image/kernel/`.
    Embedded,
    /// Debian's newest installed kernel with its modules.
    Debian,
    /// A `vmlinuz-<release>` file with its module tree.
    Path(PathBuf),
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "embedded" => Ok(Self::Embedded),
            "debian" => Ok(Self::Debian),
            "" => Err("--kernel needs embedded, debian or a path".to_string()),
            p => Ok(Self::Path(PathBuf::from(p))),
        }
    }
}

/// A kernel found on the build host.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The bzImage.
    pub image: PathBuf,
    /// Its release string (`6.1.0-56-amd64`).
    pub release: String,
    /// `/lib/modules/<release>`; `None` for a kernel without modules (the embedded one).
    pub modules_dir: Option<PathBuf>,
    /// The uncompressed PVH kernel when the build produced one (else it is extracted).
    pub vmlinux: Option<PathBuf>,
    /// How it was found, for the build's report.
    pub origin: String,
}

/// The kernel `choice` selects (`note` reports an embedded build's progress).
pub fn select(choice: &Choice, modules_root: &Path, note: &mut dyn FnMut(&str)) -> Result<Kernel> {
    match choice {
        Choice::Debian => find(None, modules_root),
        Choice::Path(p) => find(Some(p), modules_root),
        Choice::Embedded => {
            let b = crate::embedded::ensure(&crate::embedded::cache_root(), note)?;
            let origin = if b.cached {
                format!("embedded, cached in {}", b.dir.display())
            } else {
                format!(
                    "embedded, built in {:.0} s into {}",
                    b.build_seconds,
                    b.dir.display()
                )
            };
            Ok(Kernel {
                image: b.bzimage,
                release: b.release,
                modules_dir: None,
                vmlinux: Some(b.vmlinux),
                origin,
            })
        }
    }
}

/// Orders version-like strings numerically where they are numbers (`6.1.0-10` > `6.1.0-9`).
pub fn version_key(s: &str) -> Vec<(u64, String)> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (0, part.to_string()),
        })
        .collect()
}

/// Finds the kernel: `explicit` if given, else the newest `/boot/vmlinuz-*`.
pub fn find(explicit: Option<&Path>, modules_root: &Path) -> Result<Kernel> {
    let image = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let mut found: Vec<(Vec<(u64, String)>, PathBuf)> = std::fs::read_dir("/boot")
                .context("reading /boot (install linux-image-amd64: scripts/setup.sh)")?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let rel = name.strip_prefix("vmlinuz-")?.to_string();
                    modules_root
                        .join(&rel)
                        .join("modules.dep")
                        .exists()
                        .then(|| (version_key(&rel), e.path()))
                })
                .collect();
            found.sort();
            match found.pop() {
                Some((_, p)) => p,
                None => bail!(
                    "no /boot/vmlinuz-* with modules under {} (run scripts/setup.sh)",
                    modules_root.display()
                ),
            }
        }
    };
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let release = name
        .strip_prefix("vmlinuz-")
        .map(str::to_string)
        .with_context(|| format!("cannot tell the release of {}", image.display()))?;
    let modules_dir = modules_root.join(&release);
    if !modules_dir.join("modules.dep").exists() {
        bail!("{} has no modules.dep", modules_dir.display());
    }
    Ok(Kernel {
        origin: image.display().to_string(),
        image,
        release,
        modules_dir: Some(modules_dir),
        vmlinux: None,
    })
}

/// Extracts the uncompressed kernel (an ELF `vmlinux` with a PVH entry note) from a bzImage,
/// for QEMU's direct kernel boot: `-kernel vmlinux` skips the firmware and the in-guest
/// decompression, which under software emulation take several seconds. Supports the xz,
/// zstd and gzip payloads (Debian's is xz). Returns `false` when no payload was found.
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<bool> {
    use std::io::Write;
    let data = std::fs::read(bzimage)?;
    let formats: [(&[u8], &str, &[&str]); 3] = [
        (b"\xfd7zXZ\x00", "xz", &["-dcq", "--single-stream"]),
        (b"\x28\xb5\x2f\xfd", "zstd", &["-dcq"]),
        (b"\x1f\x8b\x08\x00", "gzip", &["-dcq"]),
    ];
    for (magic, tool, args) in formats {
        let Some(at) = data.windows(magic.len()).position(|w| w == magic) else {
            continue;
        };
        let mut child = std::process::Command::new(tool)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(out)?)
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("running {tool}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // zstd/gzip stop at the end of their frame; the rest of the bzImage is ignored.
            let _ = stdin.write_all(data.get(at..).unwrap_or(&[]));
        }
        let _ = child.wait()?;
        let head = std::fs::read(out).map(|d| d.get(..4) == Some(b"\x7fELF".as_slice()));
        if matches!(head, Ok(true)) {
            return Ok(true);
        }
    }
    let _ = std::fs::remove_file(out);
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_an_elf_from_a_gzip_payload() {
        let dir = tempfile::tempdir().unwrap();
        let elf = b"\x7fELF-fake-kernel-body".repeat(100);
        let gz = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut gz) = gz else { return };
        {
            use std::io::Write;
            gz.stdin.take().unwrap().write_all(&elf).unwrap();
        }
        let payload = gz.wait_with_output().unwrap().stdout;
        let mut bz = b"MZ setup code ".to_vec();
        bz.extend_from_slice(&payload);
        bz.extend_from_slice(b"trailer");
        let bzp = dir.path().join("vmlinuz");
        std::fs::write(&bzp, &bz).unwrap();
        let out = dir.path().join("vmlinux");
        assert!(extract_vmlinux(&bzp, &out).unwrap());
        assert_eq!(std::fs::read(&out).unwrap(), elf);
        std::fs::write(&bzp, b"no payload here").unwrap();
        assert!(!extract_vmlinux(&bzp, &out).unwrap());
    }

    #[test]
    fn kernel_choices_parse() {
        assert_eq!("embedded".parse::<Choice>().unwrap(), Choice::Embedded);
        assert_eq!("debian".parse::<Choice>().unwrap(), Choice::Debian);
        assert_eq!(
            "/boot/vmlinuz-6.1.0-9-amd64".parse::<Choice>().unwrap(),
            Choice::Path(PathBuf::from("/boot/vmlinuz-6.1.0-9-amd64"))
        );
        assert!("".parse::<Choice>().is_err());
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-30-amd64"];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(
            v,
            vec!["5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64"]
        );
    }

    #[test]
    fn explicit_kernel_needs_modules() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("vmlinuz-9.9.9-test");
        std::fs::write(&k, b"x").unwrap();
        assert!(find(Some(&k), dir.path()).is_err());
        std::fs::create_dir_all(dir.path().join("9.9.9-test")).unwrap();
        std::fs::write(dir.path().join("9.9.9-test/modules.dep"), b"").unwrap();
        let found = find(Some(&k), dir.path()).unwrap();
        assert_eq!(found.release, "9.9.9-test");
    }
}
