//! The CLI's keystore folder (one encrypted file per account, see `aergo_types::keystore`),
//! password input, and the independent Merkle proof verifier behind `aergo proof`.

use aergo_rpc::AccountProof;
use aergo_types::keystore::{KdfParams, KeystoreFile};
use aergo_types::{Address, Hash, Keypair};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The keystore folder.
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    /// `dir`, else ~/.aergo/keystore.
    pub fn new(dir: Option<PathBuf>) -> Result<Self> {
        let dir = match dir {
            Some(d) => d,
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .context("HOME is not set; give --keystore")?
                .join(".aergo")
                .join("keystore"),
        };
        Ok(Self { dir })
    }
    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The file of an account.
    pub fn path_of(&self, a: &Address) -> PathBuf {
        self.dir.join(format!("{}.json", a.encode()))
    }
    fn save(&self, k: &Keypair, pw: &str) -> Result<Address> {
        let addr = Address::from_public_key(&k.public());
        let p = self.path_of(&addr);
        if p.exists() {
            bail!(
                "account {addr} is already in the keystore ({})",
                p.display()
            );
        }
        KeystoreFile::encrypt(k, pw, kdf())?.save(&p)?;
        Ok(addr)
    }
    /// Creates an account.
    pub fn create(&self, pw: &str) -> Result<Address> {
        self.save(&Keypair::generate(), pw)
    }
    /// Imports a hex secret key.
    pub fn import(&self, hex_key: &str, pw: &str) -> Result<Address> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut seed)
            .context("the secret key must be 64 hex characters")?;
        self.save(&Keypair::from_seed(&seed), pw)
    }
    /// Decrypts an account.
    pub fn unlock(&self, a: &Address, pw: &str) -> Result<Keypair> {
        let p = self.path_of(a);
        if !p.exists() {
            bail!("account {a} is not in the keystore {}", self.dir.display());
        }
        Ok(KeystoreFile::load(&p)?.decrypt(pw)?)
    }
    /// Accounts in the folder.
    pub fn list(&self) -> Result<Vec<(Address, PathBuf)>> {
        let mut v = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
            Err(e) => return Err(e.into()),
        };
        for e in rd {
            let p = e?.path();
            if let Ok(ks) = KeystoreFile::load(&p) {
                v.push((ks.address, p));
            }
        }
        v.sort();
        Ok(v)
    }
}

/// KDF cost; `AERGO_KDF_MEMORY_KIB` lowers it for tests only.
fn kdf() -> KdfParams {
    let mut k = KdfParams::default();
    if let Some(m) = std::env::var("AERGO_KDF_MEMORY_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        k.m_kib = m;
    }
    k
}

/// The password from `--password`/`AERGO_PASSWORD`, else asked on the terminal.
pub fn password(given: Option<&str>, confirm: bool) -> Result<String> {
    if let Some(p) = given {
        return Ok(p.to_string());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("no password: give --password or set AERGO_PASSWORD");
    }
    eprint!("password: ");
    let mut p = String::new();
    std::io::stdin().read_line(&mut p)?;
    let p = p.trim_end_matches(['\n', '\r']).to_string();
    if confirm {
        eprint!("repeat password: ");
        let mut q = String::new();
        std::io::stdin().read_line(&mut q)?;
        if q.trim_end_matches(['\n', '\r']) != p {
            bail!("passwords differ");
        }
    }
    Ok(p)
}

fn bit(key: &Hash, depth: usize) -> bool {
    (key.0[depth / 8] >> (7 - (depth % 8))) & 1 == 1
}

/// Verifies an account proof independently of the node's tree code.
pub fn verify_proof(p: &AccountProof) -> Result<bool> {
    let key_bytes = hex::decode(&p.key).context("proof key is not hex")?;
    let key = Hash::of(&key_bytes);
    let value_hash = match &p.value {
        Some(v) => Some(Hash::of(&hex::decode(v).context("proof value is not hex")?)),
        None => None,
    };
    let leaf = |k: &Hash, v: &Hash| Hash::of_parts(&[&[0u8], &k.0, &v.0]);
    let node = |l: &Hash, r: &Hash| Hash::of_parts(&[&[1u8], &l.0, &r.0]);
    if p.proof.siblings.len() > 256 {
        return Ok(false);
    }
    let mut acc = match (&p.proof.leaf, value_hash) {
        (Some(l), Some(v)) => {
            if l.key != key || l.value_hash != v {
                return Ok(false);
            }
            leaf(&l.key, &l.value_hash)
        }
        (Some(l), None) => {
            if l.key == key || (0..p.proof.siblings.len()).any(|d| bit(&l.key, d) != bit(&key, d)) {
                return Ok(false);
            }
            leaf(&l.key, &l.value_hash)
        }
        (None, Some(_)) => return Ok(false),
        (None, None) => Hash::ZERO,
    };
    for (d, s) in p.proof.siblings.iter().enumerate().rev() {
        acc = if bit(&key, d) {
            node(s, &acc)
        } else {
            node(&acc, s)
        };
    }
    Ok(acc == p.state_root)
}
