//! Kernel module dependency resolution from `modules.dep` (and `modules.softdep` `pre:`
//! entries), used by `aergo-image` to pick the modules the appliance needs and by
//! `aergo-init` to load them in order.
//!
//! Module names compare with `-` and `_` treated alike (as modprobe does).

use std::collections::{BTreeMap, BTreeSet};

/// Name of the load-order file `aergo-image` writes into `/lib/modules/<release>/`.
pub const LOAD_LIST: &str = "aergo-modules.load";

/// Errors resolving modules.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A module is not in `modules.dep`.
    #[error("kernel module `{0}` not found in modules.dep")]
    NotFound(String),
    /// A dependency cycle (a broken modules.dep).
    #[error("dependency cycle through `{0}`")]
    Cycle(String),
}

/// Canonical module name of a path or name: basename without `.ko[.xz|.zst|.gz]`, `-` → `_`.
pub fn canonical(name_or_path: &str) -> String {
    let base = name_or_path.rsplit('/').next().unwrap_or(name_or_path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// The parsed dependency database of one kernel.
#[derive(Debug, Default, Clone)]
pub struct ModuleDb {
    /// canonical name → (relative path, dependency paths).
    modules: BTreeMap<String, (String, Vec<String>)>,
    /// canonical name → soft pre-dependencies (names).
    softdeps: BTreeMap<String, Vec<String>>,
}

impl ModuleDb {
    /// Parses the text of `modules.dep` and (optionally empty) `modules.softdep`.
    pub fn parse(dep: &str, softdep: &str) -> Self {
        let mut db = ModuleDb::default();
        for line in dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            db.modules.insert(canonical(path), (path.to_string(), deps));
        }
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let mut pre = Vec::new();
            let mut in_pre = false;
            for w in words {
                match w {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    other if in_pre => pre.push(canonical(other)),
                    _ => {}
                }
            }
            db.softdeps
                .entry(canonical(module))
                .or_default()
                .extend(pre);
        }
        db
    }

    /// Whether a module exists (as a loadable module; built-ins are not listed).
    pub fn contains(&self, name: &str) -> bool {
        self.modules.contains_key(&canonical(name))
    }

    /// Relative paths of `wanted` and everything they depend on, dependencies first, each
    /// once. Soft `pre:` dependencies that exist as modules are included before the module;
    /// missing soft dependencies are ignored (they may be built in or aliases).
    pub fn resolve(&self, wanted: &[&str]) -> Result<Vec<String>, ModuleError> {
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        let mut visiting = BTreeSet::new();
        for w in wanted {
            self.visit(&canonical(w), &mut out, &mut done, &mut visiting, true)?;
        }
        Ok(out)
    }

    fn visit(
        &self,
        name: &str,
        out: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        visiting: &mut BTreeSet<String>,
        required: bool,
    ) -> Result<(), ModuleError> {
        if done.contains(name) {
            return Ok(());
        }
        let Some((path, deps)) = self.modules.get(name) else {
            return if required {
                Err(ModuleError::NotFound(name.to_string()))
            } else {
                Ok(())
            };
        };
        if !visiting.insert(name.to_string()) {
            return Err(ModuleError::Cycle(name.to_string()));
        }
        if let Some(pre) = self.softdeps.get(name) {
            for p in pre {
                self.visit(p, out, done, visiting, false)?;
            }
        }
        for d in deps {
            self.visit(&canonical(d), out, done, visiting, true)?;
        }
        visiting.remove(name);
        done.insert(name.to_string());
        out.push(path.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/nvme/host/nvme-core.ko:
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
";
    const SOFT: &str = "softdep ext4 pre: crc32c-generic crypto-crc32c\nsoftdep x post: y\n";

    fn pos(v: &[String], s: &str) -> usize {
        v.iter().position(|p| p.ends_with(s)).unwrap()
    }

    #[test]
    fn canonical_names() {
        assert_eq!(
            canonical("kernel/drivers/nvme/host/nvme-core.ko"),
            "nvme_core"
        );
        assert_eq!(canonical("x/virtio_blk.ko.xz"), "virtio_blk");
        assert_eq!(canonical("crc32c-intel"), "crc32c_intel");
    }

    #[test]
    fn dependencies_come_first_once() {
        let db = ModuleDb::parse(DEP, SOFT);
        let order = db
            .resolve(&["virtio_blk", "ext4", "nvme", "virtio-blk"])
            .unwrap();
        assert_eq!(order.len(), 10);
        assert!(pos(&order, "/virtio_ring.ko") < pos(&order, "/virtio.ko"));
        assert!(pos(&order, "/virtio.ko") < pos(&order, "/virtio_blk.ko"));
        assert!(pos(&order, "/jbd2.ko") < pos(&order, "/ext4.ko"));
        assert!(pos(&order, "/crc32c_generic.ko") < pos(&order, "/ext4.ko"));
        assert!(pos(&order, "/nvme-core.ko") < pos(&order, "/nvme.ko"));
        let unique: BTreeSet<_> = order.iter().collect();
        assert_eq!(unique.len(), order.len());
    }

    #[test]
    fn missing_module_and_cycle_are_errors() {
        let db = ModuleDb::parse(DEP, "");
        assert!(matches!(
            db.resolve(&["nope"]),
            Err(ModuleError::NotFound(_))
        ));
        assert!(matches!(db.resolve(&["a"]), Err(ModuleError::Cycle(_))));
        assert!(db.contains("nvme-core"));
    }
}
