//! The node's producer/identity key: an unencrypted file (mode 0600) holding the hex seed,
//! created on first start when absent, as validator keys are on headless servers.

use aergo_types::keystore::write_private;
use aergo_types::Keypair;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Loads the key at `path`, creating it (0600) when absent.
pub fn load_or_create(path: &Path) -> Result<(Keypair, bool)> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read node key {}", path.display()))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .with_context(|| format!("node key {} is not 64 hex characters", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "node key {} is readable by others (mode {mode:o}); run chmod 600 on it",
                path.display()
            );
        }
        return Ok((Keypair::from_seed(&seed), false));
    }
    let k = Keypair::generate();
    write_private(path, format!("{}\n", hex::encode(k.seed())).as_bytes())
        .with_context(|| format!("create node key {}", path.display()))?;
    Ok((k, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("node.key");
        let (a, created) = load_or_create(&p).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&p).is_err());
        std::fs::write(&p, "zz").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create(&p).is_err());
    }
}
