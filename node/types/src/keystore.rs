//! Encrypted wallet keystores: one JSON file per account.
//!
//! The 32-byte ed25519 seed is encrypted with XChaCha20-Poly1305 (AEAD; the address is the
//! associated data, so a file whose address was edited fails to open) under a key derived
//! from the password with Argon2id (memory-hard; parameters stored in the file; default
//! 19 MiB, 2 passes, 1 lane — the OWASP minimum — so a CLI call stays interactive).

use crate::address::Address;
use crate::crypto::Keypair;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

/// Keystore failures.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Wrong password or tampered file.
    #[error("cannot decrypt keystore for {0}: wrong password or corrupted file")]
    Decrypt(String),
    /// File I/O.
    #[error("keystore file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a keystore file.
    #[error("invalid keystore file: {0}")]
    Format(String),
    /// The KDF failed (bad parameters).
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// Argon2id parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// Salt, hex.
    pub salt: String,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            algorithm: "argon2id".into(),
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
            salt: String::new(),
        }
    }
}

/// The keystore file's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeystoreFile {
    /// Format version (1).
    pub version: u32,
    /// The account's address.
    pub address: Address,
    /// KDF parameters.
    pub kdf: KdfParams,
    /// Always `xchacha20poly1305`.
    pub cipher: String,
    /// 24-byte nonce, hex.
    pub nonce: String,
    /// Encrypted seed with tag, hex.
    pub ciphertext: String,
}

fn derive(password: &str, kdf: &KdfParams) -> Result<[u8; 32], KeystoreError> {
    if kdf.algorithm != "argon2id" {
        return Err(KeystoreError::Format(format!(
            "unsupported KDF {}",
            kdf.algorithm
        )));
    }
    let salt = hex::decode(&kdf.salt).map_err(|_| KeystoreError::Format("bad salt".into()))?;
    let params = Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &salt, &mut key)
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

impl KeystoreFile {
    /// Encrypts `key` under `password` with the given KDF cost.
    pub fn encrypt(
        key: &Keypair,
        password: &str,
        mut kdf: KdfParams,
    ) -> Result<Self, KeystoreError> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        kdf.salt = hex::encode(salt);
        let mut dk = derive(password, &kdf)?;
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let address = Address::from_public_key(&key.public());
        let aad = address.encode();
        let cipher = XChaCha20Poly1305::new((&dk).into());
        dk.zeroize();
        let mut seed = key.seed();
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &seed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeystoreError::Format("encryption failed".into()))?;
        seed.zeroize();
        Ok(Self {
            version: 1,
            address,
            kdf,
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ct),
        })
    }

    /// Decrypts with `password`.
    pub fn decrypt(&self, password: &str) -> Result<Keypair, KeystoreError> {
        if self.version != 1 || self.cipher != "xchacha20poly1305" {
            return Err(KeystoreError::Format(
                "unsupported version or cipher".into(),
            ));
        }
        let nonce =
            hex::decode(&self.nonce).map_err(|_| KeystoreError::Format("bad nonce".into()))?;
        if nonce.len() != 24 {
            return Err(KeystoreError::Format("bad nonce length".into()));
        }
        let ct = hex::decode(&self.ciphertext)
            .map_err(|_| KeystoreError::Format("bad ciphertext".into()))?;
        let mut dk = derive(password, &self.kdf)?;
        let cipher = XChaCha20Poly1305::new((&dk).into());
        dk.zeroize();
        let aad = self.address.encode();
        let mut seed = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeystoreError::Decrypt(self.address.encode()))?;
        let arr: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| KeystoreError::Format("bad seed length".into()))?;
        seed.zeroize();
        let kp = Keypair::from_seed(&arr);
        if Address::from_public_key(&kp.public()) != self.address {
            return Err(KeystoreError::Decrypt(self.address.encode()));
        }
        Ok(kp)
    }

    /// Reads a keystore file.
    pub fn load(path: &Path) -> Result<Self, KeystoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeystoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| KeystoreError::Format(e.to_string()))
    }

    /// Writes the file with mode 0600, atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), KeystoreError> {
        let json =
            serde_json::to_string_pretty(self).map_err(|e| KeystoreError::Format(e.to_string()))?;
        write_private(path, json.as_bytes()).map_err(|source| KeystoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes `data` to `path` with mode 0600 via a temp file, fsync and rename. Folders it has
/// to create are made 0700 (the keystore folder lists which accounts exist).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams {
            m_kib: 64,
            t: 1,
            ..KdfParams::default()
        }
    }

    #[test]
    fn round_trip_and_wrong_password() {
        let k = Keypair::generate();
        let ks = KeystoreFile::encrypt(&k, "pw", cheap()).unwrap();
        assert_eq!(ks.decrypt("pw").unwrap().public(), k.public());
        assert!(matches!(ks.decrypt("nope"), Err(KeystoreError::Decrypt(_))));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        ks.save(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(KeystoreFile::load(&p).unwrap(), ks);
    }

    #[test]
    fn tampering_is_detected() {
        let k = Keypair::generate();
        let mut ks = KeystoreFile::encrypt(&k, "pw", cheap()).unwrap();
        ks.address = Address::from_public_key(&Keypair::generate().public());
        assert!(ks.decrypt("pw").is_err());
        let mut ks = KeystoreFile::encrypt(&k, "pw", cheap()).unwrap();
        ks.ciphertext.replace_range(0..2, "00");
        assert!(ks.decrypt("pw").is_err());
    }
}
