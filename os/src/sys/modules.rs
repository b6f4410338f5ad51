//! Kernel module dependency resolution from `modules.dep` (and `modules.softdep` `pre:`
//! entries), used by `aergo-image` to pick the modules the appliance needs and by
//! `aergo-init` to load them in order.
//!
//! Module names compare with `-` and `_` treated alike (as modprobe does).

use std::collections::{BTreeMap, BTreeSet};

/// Name of the load-order file `aergo-image` writes into `/lib/modules/<release>/`: the
/// modules loaded on every boot (filesystem, input), dependencies first.
pub const LOAD_LIST: &str = "aergo-modules.load";
/// The `modules.dep` lines of the modules in the image.
pub const DEP_LIST: &str = "aergo-modules.dep";
/// The `modules.alias` lines of the modules in the image: init loads a hardware driver only
/// when a device's `modalias` matches (as udev's coldplug does).
pub const ALIAS_LIST: &str = "aergo-modules.alias";

/// Shell-style glob match as used by `modules.alias` (`*`, `?`, `[abc]`, `[a-z]`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let tc = t.get(ti).copied().unwrap_or('\0');
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => {
                let mut j = pi + 1;
                let negate = matches!(p.get(j), Some('!') | Some('^'));
                if negate {
                    j += 1;
                }
                let mut hit = false;
                let mut first = true;
                while let Some(&c) = p.get(j) {
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    if p.get(j + 1) == Some(&'-') && p.get(j + 2).is_some_and(|e| *e != ']') {
                        let hi = p.get(j + 2).copied().unwrap_or(c);
                        hit |= c <= tc && tc <= hi;
                        j += 3;
                    } else {
                        hit |= c == tc;
                        j += 1;
                    }
                }
                (hit != negate && p.get(j) == Some(&']')).then_some(j + 1)
            }
            Some(&c) => (c == tc).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Parsed `alias PATTERN module` lines.
#[derive(Debug, Default, Clone)]
pub struct Aliases {
    entries: Vec<(String, String)>,
}

impl Aliases {
    /// Parses `modules.alias` text.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("alias")).then_some(())?;
                Some((w.next()?.to_string(), canonical(w.next()?)))
            })
            .collect();
        Self { entries }
    }

    /// Keeps only aliases of the given (canonical) module names.
    pub fn retain_modules(&mut self, names: &BTreeSet<String>) {
        self.entries.retain(|(_, m)| names.contains(m));
    }

    /// The text form (`alias PATTERN module` lines).
    pub fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(p, m)| format!("alias {p} {m}\n"))
            .collect()
    }

    /// Modules whose alias matches a device's `modalias`.
    pub fn modules_for(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (p, m) in &self.entries {
            if glob_match(p, modalias) && !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }
}

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

    /// `modules.dep` lines for the given module paths (as returned by [`Self::resolve`]).
    pub fn subset_text(&self, paths: &[String]) -> String {
        let mut out = String::new();
        for p in paths {
            if let Some((path, deps)) = self.modules.get(&canonical(p)) {
                out.push_str(&format!("{path}: {}\n", deps.join(" ")));
            }
        }
        out
    }

    /// Canonical names of everything `name` depends on (transitively, as `modules.dep` lists).
    pub fn deps_of(&self, name: &str) -> Vec<String> {
        self.modules
            .get(&canonical(name))
            .map(|(_, deps)| deps.iter().map(|d| canonical(d)).collect())
            .unwrap_or_default()
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
    fn globs() {
        assert!(glob_match(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00"
        ));
        assert!(!glob_match(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00008086d00000D57sv00000000sd00000000bc06sc00i00"
        ));
        assert!(glob_match("acpi*:LNXPWRBN:*", "acpi:LNXPWRBN:"));
        assert!(glob_match(
            "virtio:d00000002v*",
            "virtio:d00000002v00001AF4"
        ));
        assert!(!glob_match(
            "virtio:d00000002v*",
            "virtio:d00000001v00001AF4"
        ));
        assert!(glob_match("scsi:t-0x0[0-7]*", "scsi:t-0x05"));
        assert!(!glob_match("scsi:t-0x0[!0-7]*", "scsi:t-0x05"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "ac"));
        assert!(glob_match("*", "") && !glob_match("a", ""));
    }

    #[test]
    fn aliases_select_modules_and_subset_round_trips() {
        let mut a = Aliases::parse(
            "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias virtio:d00000002v* virtio_blk\nalias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n",
        );
        assert_eq!(
            a.modules_for("virtio:d00000002v00001AF4"),
            vec!["virtio_blk"]
        );
        assert!(a
            .modules_for("pci:v00008086d000010D3sv0sd0bc02sc00i00")
            .contains(&"e1000e".to_string()));
        a.retain_modules(&["virtio_blk".to_string()].into_iter().collect());
        assert_eq!(
            Aliases::parse(&a.to_text()).modules_for("virtio:d00000002v1"),
            vec!["virtio_blk"]
        );
        assert!(a.modules_for("pci:v00001AF4d1sv1sd1bc1sc1i1").is_empty());
        let db = ModuleDb::parse(DEP, "");
        let order = db.resolve(&["virtio_blk"]).unwrap();
        let sub = ModuleDb::parse(&db.subset_text(&order), "");
        assert_eq!(sub.resolve(&["virtio_blk"]).unwrap(), order);
        assert!(!sub.contains("ext4"));
        assert_eq!(
            db.deps_of("kernel/drivers/block/virtio_blk.ko"),
            vec!["virtio", "virtio_ring"]
        );
        assert!(db.deps_of("nope").is_empty());
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
