//! Finding the kernel to boot (Debian's `linux-image-amd64`: the newest `/boot/vmlinuz-*`
//! whose module folder exists) and the modules the appliance needs.

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
    // filesystem (crc32c first: ext4's checksum driver)
    "crc32c_intel",
    "crc32c_generic",
    "ext4",
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
];

/// A kernel found on the build host.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The bzImage.
    pub image: PathBuf,
    /// Its release string (`6.1.0-56-amd64`).
    pub release: String,
    /// `/lib/modules/<release>`.
    pub modules_dir: PathBuf,
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
        image,
        release,
        modules_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
