//! Shared-library resolution: the libraries `ldd` lists for each binary (including the
//! dynamic loader), so the initramfs carries exactly what our dynamic binaries load.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Parses `ldd` output into absolute library paths (the loader included, vDSO excluded).
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.contains("statically linked") {
            continue;
        }
        if line.contains("not found") {
            bail!("missing shared library: {line}");
        }
        let path = if let Some((_, rhs)) = line.split_once("=>") {
            rhs.split_whitespace().next().unwrap_or("")
        } else {
            line.split_whitespace().next().unwrap_or("")
        };
        if path.starts_with('/') {
            out.push(PathBuf::from(path));
        }
    }
    Ok(out)
}

/// The libraries all `binaries` need, each once.
pub fn resolve(binaries: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut all = BTreeSet::new();
    for b in binaries {
        let o = Command::new("ldd")
            .arg(b)
            .output()
            .with_context(|| format!("running ldd on {}", b.display()))?;
        let text = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() && !text.contains("statically linked") {
            // `ldd` exits 1 for static binaries ("not a dynamic executable").
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("not a dynamic executable") {
                continue;
            }
            bail!("ldd {} failed: {err}", b.display());
        }
        all.extend(parse_ldd(&text)?);
    }
    Ok(all)
}

/// Where a file of the build host's `/usr` (or of `/lib`, which is `/usr/lib` on a merged-usr
/// system such as Debian 12) goes in the system partition mounted at `/usr`: the path
/// relative to the partition's root. `None` for paths elsewhere (kept in the initramfs).
pub fn system_path(path: &Path) -> Option<PathBuf> {
    let rel = if let Ok(r) = path.strip_prefix("/usr") {
        r.to_path_buf()
    } else if path.starts_with("/lib/") {
        path.strip_prefix("/").ok()?.to_path_buf()
    } else {
        return None;
    };
    let rel_str = rel.to_string_lossy();
    (!rel_str.is_empty() && !rel_str.contains("..")).then_some(rel)
}

/// Reads a library, following symlinks, for placement at its `ldd` path.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibrocksdb.so.7.8 => /lib/x86_64-linux-gnu/librocksdb.so.7.8 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/librocksdb.so.7.8"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
    }

    #[test]
    fn system_paths_map_lib_and_usr_into_the_partition() {
        let sp = |p: &str| system_path(Path::new(p)).map(|p| p.display().to_string());
        assert_eq!(
            sp("/lib/x86_64-linux-gnu/librocksdb.so.7.8").as_deref(),
            Some("lib/x86_64-linux-gnu/librocksdb.so.7.8")
        );
        assert_eq!(
            sp("/usr/lib/x86_64-linux-gnu/libz.so.1").as_deref(),
            Some("lib/x86_64-linux-gnu/libz.so.1")
        );
        assert_eq!(sp("/usr/bin/aergo-node").as_deref(), Some("bin/aergo-node"));
        assert_eq!(sp("/lib64/ld-linux-x86-64.so.2"), None);
        assert_eq!(sp("/opt/x/libq.so"), None);
        assert_eq!(sp("/usr"), None);
        assert_eq!(sp("/usr/lib/../../etc/passwd"), None);
    }

    #[test]
    fn resolves_a_real_binary() {
        let me = std::env::current_exe().unwrap();
        let libs = resolve(&[me]).unwrap();
        assert!(libs.iter().any(|p| p.to_string_lossy().contains("libc.so")));
        assert!(libs
            .iter()
            .any(|p| p.to_string_lossy().contains("ld-linux")));
    }
}
