//! The appliance's own kernel (`aergo-image --kernel embedded`): Debian's kernel source
//! package (`linux-source-6.1`), `allnoconfig` plus the fragment `image/kernel/aergo-x86_64.config`
//! (compiled into this program), `make bzImage`; everything built in, no modules.
//!
//! Builds are cached outside the clone in `${AERGO_KERNEL_CACHE:-/var/cache/aergo-kernel}/<key>/`
//! (`bzImage`, the PVH `vmlinux`, the final `config`, `build.log`, `build-seconds`,
//! `release`). `<key>` is the SHA-256 of the recipe version, the source package's version,
//! the first line of `gcc --version` and the fragment's settings (its lines without the
//! comments), so a changed setting, source or compiler builds anew and anything else is a
//! cache hit that costs nothing. A build
//! writes into `<key>.tmp/` and renames it when complete (an interrupted build is never
//! mistaken for a finished one); `<key>.lock` serialises concurrent builds of one key.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The config fragment merged onto `allnoconfig`.
pub const FRAGMENT: &str = include_str!("../kernel/aergo-x86_64.config");
/// Bumped whenever the build steps below change (part of the cache key).
pub const RECIPE: u32 = 1;
/// Debian's kernel source package.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
/// The tarball the package installs.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The default cache folder.
pub const DEFAULT_CACHE: &str = "/var/cache/aergo-kernel";

/// A built (or cached) embedded kernel.
#[derive(Debug, Clone)]
pub struct Built {
    /// The cache entry's folder.
    pub dir: PathBuf,
    /// `bzImage` (EFI stub, zstd payload).
    pub bzimage: PathBuf,
    /// The uncompressed ELF kernel with its PVH entry (QEMU `-kernel`).
    pub vmlinux: PathBuf,
    /// `make kernelrelease` (`6.1.x-aergo`).
    pub release: String,
    /// Seconds the build took (when it was built, not by this run: see `cached`).
    pub build_seconds: f64,
    /// Whether this run found it in the cache.
    pub cached: bool,
}

/// The cache root: `$AERGO_KERNEL_CACHE` or [`DEFAULT_CACHE`].
pub fn cache_root() -> PathBuf {
    std::env::var_os("AERGO_KERNEL_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// The fragment's settings, one per line as written, without comments and blank lines
/// (`# CONFIG_X is not set` is a setting): what the kernel depends on.
pub fn settings(fragment: &str) -> String {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("CONFIG_") || (l.starts_with("# CONFIG_") && l.ends_with(" is not set"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The cache key: hex SHA-256 of the recipe version, the source package version, the
/// compiler's identification and the fragment's [`settings`] (editing a comment does not
/// rebuild the kernel; changing, adding or reordering a setting does).
pub fn cache_key(source_version: &str, gcc: &str, fragment: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("aergo-kernel recipe {RECIPE}\n").as_bytes());
    h.update(format!("{SOURCE_PACKAGE} {source_version}\n").as_bytes());
    h.update(format!("{gcc}\n").as_bytes());
    h.update(settings(fragment).as_bytes());
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// The fragment's requests that the final `.config` does not honour: `CONFIG_X=v` lines
/// absent from it, and `# CONFIG_X is not set` lines whose symbol is set anyway.
pub fn unhonoured(fragment: &str, config: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = config.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if line.starts_with("CONFIG_") {
            if !have.contains(line) {
                out.push(line.to_string());
            }
        } else if let Some(sym) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
            .filter(|s| s.starts_with("CONFIG_"))
        {
            if have.iter().any(|l| l.starts_with(&format!("{sym}="))) {
                out.push(line.to_string());
            }
        }
    }
    out
}

fn output_text(cmd: &mut Command, what: &str) -> Result<String> {
    let o = cmd
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!("{what} failed");
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The installed source package's version, or a clear error naming the setup script.
fn source_version() -> Result<String> {
    let v = output_text(
        Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]),
        "dpkg-query",
    )
    .ok()
    .filter(|v| !v.is_empty());
    match v {
        Some(v) if Path::new(SOURCE_TARBALL).exists() => Ok(v),
        _ => bail!(
            "the embedded kernel needs {SOURCE_PACKAGE} ({SOURCE_TARBALL}) and the kernel build \
             tools: run scripts/setup.sh (or use --kernel debian)"
        ),
    }
}

fn gcc_id() -> Result<String> {
    let v = output_text(Command::new("gcc").arg("--version"), "gcc --version")
        .context("the embedded kernel needs gcc: run scripts/setup.sh")?;
    Ok(v.lines().next().unwrap_or_default().to_string())
}

fn read_entry(dir: &Path) -> Option<Built> {
    let bzimage = dir.join("bzImage");
    let vmlinux = dir.join("vmlinux");
    let release = std::fs::read_to_string(dir.join("release")).ok()?;
    if !bzimage.is_file() || !vmlinux.is_file() {
        return None;
    }
    let build_seconds = std::fs::read_to_string(dir.join("build-seconds"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0.0);
    Some(Built {
        dir: dir.to_path_buf(),
        bzimage,
        vmlinux,
        release: release.trim().to_string(),
        build_seconds,
        cached: true,
    })
}

/// Runs `cmd` in `dir` with its output appended to `log`; fails naming `what` and the log.
fn run_logged(mut cmd: Command, dir: &Path, log: &Path, what: &str) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let st = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()
        .with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed: see {}", log.display());
    }
    Ok(())
}

/// Returns the embedded kernel for the current fragment, building it into the cache first
/// when it is not there (`note` reports progress).
pub fn ensure(root: &Path, note: &mut dyn FnMut(&str)) -> Result<Built> {
    let key = cache_key(&source_version()?, &gcc_id()?, FRAGMENT);
    let dir = root.join(&key);
    if let Some(b) = read_entry(&dir) {
        return Ok(b);
    }
    std::fs::create_dir_all(root).with_context(|| {
        format!(
            "creating the kernel cache {} (set AERGO_KERNEL_CACHE to a writable folder)",
            root.display()
        )
    })?;
    let lock = std::fs::File::create(root.join(format!("{key}.lock")))?;
    lock.lock().context("locking the kernel cache entry")?;
    // Another build may have finished while this one waited for the lock.
    if let Some(b) = read_entry(&dir) {
        return Ok(b);
    }
    let started = Instant::now();
    let tmp = root.join(format!("{key}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let src = tmp.join("src");
    std::fs::create_dir_all(&src)?;
    let log = tmp.join("build.log");
    note(&format!(
        "building the embedded kernel into {} (cold cache: minutes; log {})",
        tmp.display(),
        log.display()
    ));
    let mut tar = Command::new("tar");
    tar.args(["-xJf", SOURCE_TARBALL, "--strip-components=1"]);
    run_logged(tar, &src, &log, "unpacking the kernel source")?;
    let frag = tmp.join("aergo.config");
    std::fs::write(&frag, FRAGMENT)?;
    let mut merge = Command::new("scripts/kconfig/merge_config.sh");
    merge.args(["-n", ".config"]).arg(&frag);
    run_logged(
        merge,
        &src,
        &log,
        "merge_config.sh (allnoconfig + fragment)",
    )?;
    let config = std::fs::read_to_string(src.join(".config"))?;
    let missing = unhonoured(FRAGMENT, &config);
    if !missing.is_empty() {
        bail!(
            "the kernel config fragment asks for values the final .config lacks (a missing \
             dependency?): {}",
            missing.join(", ")
        );
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    // nice 19: the build shares the machine with whatever else runs (tests, other builds).
    let mut make = Command::new("nice");
    make.args(["-n", "19", "make", &format!("-j{jobs}"), "bzImage"])
        .env("KBUILD_BUILD_USER", "aergo")
        .env("KBUILD_BUILD_HOST", "aergo-image");
    run_logged(make, &src, &log, "make bzImage")?;
    let release = output_text(
        Command::new("make")
            .args(["-s", "kernelrelease"])
            .current_dir(&src),
        "make kernelrelease",
    )?;
    let vmlinux = src.join("arch/x86/boot/compressed/vmlinux.bin");
    let head = std::fs::read(&vmlinux).map(|d| d.get(..4) == Some(b"\x7fELF".as_slice()));
    if !matches!(head, Ok(true)) {
        bail!("{} is not an ELF kernel", vmlinux.display());
    }
    std::fs::copy(src.join("arch/x86/boot/bzImage"), tmp.join("bzImage"))?;
    std::fs::copy(&vmlinux, tmp.join("vmlinux"))?;
    std::fs::copy(src.join(".config"), tmp.join("config"))?;
    let secs = started.elapsed().as_secs_f64();
    std::fs::write(tmp.join("build-seconds"), format!("{secs:.0}\n"))?;
    std::fs::write(tmp.join("release"), format!("{release}\n"))?;
    std::fs::remove_dir_all(&src)?;
    std::fs::rename(&tmp, &dir)?;
    let mut b = read_entry(&dir).context("the kernel cache entry just written is incomplete")?;
    b.cached = false;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_each_input() {
        let k = cache_key("6.1.1-1", "gcc 12", "CONFIG_A=y\n");
        assert_eq!(k.len(), 64);
        assert_eq!(k, cache_key("6.1.1-1", "gcc 12", "CONFIG_A=y\n"));
        assert_ne!(k, cache_key("6.1.1-2", "gcc 12", "CONFIG_A=y\n"));
        assert_ne!(k, cache_key("6.1.1-1", "gcc 13", "CONFIG_A=y\n"));
        assert_ne!(k, cache_key("6.1.1-1", "gcc 12", "CONFIG_A=n\n"));
        assert_ne!(
            k,
            cache_key("6.1.1-1", "gcc 12", "CONFIG_A=y\n# CONFIG_B is not set\n")
        );
        // Comments and blank lines are not part of it.
        assert_eq!(
            k,
            cache_key("6.1.1-1", "gcc 12", "# Why A.\n\n  CONFIG_A=y\n# more\n")
        );
    }

    #[test]
    fn unhonoured_requests_are_named() {
        let frag = "# comment\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_S=\"x\"\n# CONFIG_M is not set\n";
        let ok = "CONFIG_A=y\nCONFIG_B=y\nCONFIG_S=\"x\"\n# CONFIG_M is not set\n";
        assert!(unhonoured(frag, ok).is_empty());
        let bad = "CONFIG_A=y\nCONFIG_B=m\nCONFIG_M=y\n";
        assert_eq!(
            unhonoured(frag, bad),
            vec![
                "CONFIG_B=y".to_string(),
                "CONFIG_S=\"x\"".to_string(),
                "# CONFIG_M is not set".to_string()
            ]
        );
    }

    #[test]
    fn the_fragment_builds_everything_in() {
        assert!(FRAGMENT.contains("# CONFIG_MODULES is not set"));
        assert!(!FRAGMENT
            .lines()
            .any(|l| l.starts_with("CONFIG_") && l.ends_with("=m")));
        for want in [
            "CONFIG_KERNEL_ZSTD=y",
            "CONFIG_RD_ZSTD=y",
            "CONFIG_IO_URING=y",
        ] {
            assert!(FRAGMENT.lines().any(|l| l == want), "{want}");
        }
    }

    #[test]
    fn a_cached_entry_needs_all_its_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_entry(d.path()).is_none());
        std::fs::write(d.path().join("bzImage"), b"x").unwrap();
        std::fs::write(d.path().join("release"), b"6.1.1-aergo\n").unwrap();
        assert!(read_entry(d.path()).is_none());
        std::fs::write(d.path().join("vmlinux"), b"x").unwrap();
        std::fs::write(d.path().join("build-seconds"), b"600\n").unwrap();
        let b = read_entry(d.path()).unwrap();
        assert_eq!(b.release, "6.1.1-aergo");
        assert!((b.build_seconds - 600.0).abs() < 1e-9);
    }
}
