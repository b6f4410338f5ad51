//! The CLI's keystore folder (one encrypted file per account, see `aergo_types::keystore`),
//! password input, the address book (names of accounts and contracts, `names.json` in the
//! keystore folder), and the independent Merkle proof verifier behind `aergo proof`.

use aergo_rpc::AccountProof;
use aergo_types::keystore::{KdfParams, KeystoreFile};
use aergo_types::{Address, Hash, Keypair};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Checks a name for the address book: 1–32 characters, a lower-case letter first, then
/// lower-case letters, digits, `-` or `_` (so a name never looks like an address, which starts
/// with `A`); `dev` is taken.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 32 {
        bail!("name `{name}`: use 1–32 characters, a lower-case letter first, then a-z, 0-9, `-` or `_`");
    }
    if name == "dev" {
        bail!("`dev` is the dev chain's funded account; choose another name");
    }
    Ok(())
}

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
        self.tighten()?;
        Ok(addr)
    }
    /// Makes the folder 0700 when others could list it (folders made by older versions were
    /// 0755), saying so once.
    fn tighten(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&self.dir)
            .with_context(|| format!("keystore folder {}", self.dir.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("restrict keystore folder {}", self.dir.display()))?;
            eprintln!(
                "note: keystore folder {} was readable by others ({mode:o}); now {:o}",
                self.dir.display(),
                mode & 0o700
            );
        }
        Ok(())
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
    fn names_path(&self) -> PathBuf {
        self.dir.join("names.json")
    }
    /// The address book: name → address (empty when there is none).
    pub fn names(&self) -> Result<BTreeMap<String, String>> {
        let p = self.names_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("read {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(anyhow::Error::from(e).context(format!("read {}", p.display()))),
        }
    }
    /// The address a name stands for.
    pub fn lookup(&self, name: &str) -> Result<Option<Address>> {
        match self.names()?.get(name) {
            None => Ok(None),
            Some(a) => Address::decode(a).map(Some).map_err(|e| {
                anyhow::anyhow!("name `{name}` in {}: {e}", self.names_path().display())
            }),
        }
    }
    /// Names `a`; a name already given to another address is refused.
    pub fn set_name(&self, name: &str, a: &Address) -> Result<()> {
        check_name(name)?;
        let mut names = self.names()?;
        if let Some(old) = names.get(name) {
            if *old != a.encode() {
                bail!("the name `{name}` is already taken by {old}; choose another");
            }
            return Ok(());
        }
        names.insert(name.to_string(), a.encode());
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("create keystore folder {}", self.dir.display()))?;
        aergo_types::keystore::write_private(
            &self.names_path(),
            &serde_json::to_vec_pretty(&names)?,
        )
        .with_context(|| format!("write {}", self.names_path().display()))?;
        Ok(())
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

/// Passwords shorter than this draw a warning when an account is created or imported.
pub const SHORT_PASSWORD: usize = 8;

/// The password from `--password`/`AERGO_PASSWORD`, else asked on the controlling terminal
/// without echo (also when stdin is a pipe, as in `aergo account import < key`).
/// `confirm` (creating or importing an account): asked twice, an empty password refused and a
/// short one warned about.
pub fn password(given: Option<&str>, confirm: bool) -> Result<String> {
    let p = match given {
        Some(p) => p.to_string(),
        None => {
            let mut tty = Tty::open().context(
                "no password: give --password or set AERGO_PASSWORD (no terminal to ask on)",
            )?;
            let p = tty.read_hidden("password: ")?;
            if confirm {
                if p.is_empty() {
                    bail!("an empty password would leave the key unprotected; choose one");
                }
                if p.chars().count() < SHORT_PASSWORD {
                    tty.say(&short_warning())?;
                }
                let q = tty.read_hidden("repeat password: ")?;
                if q != p {
                    bail!("passwords differ; nothing was saved");
                }
            }
            return Ok(p);
        }
    };
    if confirm {
        if p.is_empty() {
            bail!("an empty password would leave the key unprotected; choose one");
        }
        if p.chars().count() < SHORT_PASSWORD {
            eprintln!("{}", short_warning());
        }
    }
    Ok(p)
}

fn short_warning() -> String {
    format!(
        "warning: a password under {SHORT_PASSWORD} characters is easy to guess for anyone who \
         gets a copy of the keystore file"
    )
}

/// The controlling terminal, for prompts that must not echo.
struct Tty {
    file: std::fs::File,
}

/// Restores the terminal's modes when dropped (also on an error path).
struct EchoGuard {
    fd: std::os::fd::RawFd,
    saved: libc::termios,
}

impl Drop for EchoGuard {
    fn drop(&mut self) {
        // SAFETY: `fd` stays open for the guard's life (the guard borrows from a live `Tty`
        // call) and `saved` is a termios the kernel filled in.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

impl Tty {
    fn open() -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")?;
        Ok(Self { file })
    }

    fn say(&mut self, line: &str) -> Result<()> {
        use std::io::Write;
        writeln!(self.file, "{line}")?;
        Ok(())
    }

    /// Prompts and reads one line with echo off (the newline still echoes, so the cursor
    /// moves on). Fails rather than read with echo on.
    fn read_hidden(&mut self, prompt: &str) -> Result<String> {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        // SAFETY: a zeroed termios is a valid value for tcgetattr to overwrite.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is the open /dev/tty; `t` is a valid, writable termios.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            bail!(
                "cannot read the terminal's settings to hide the password: {}",
                std::io::Error::last_os_error()
            );
        }
        let guard = EchoGuard { fd, saved: t };
        t.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        t.c_lflag |= libc::ECHONL;
        // SAFETY: as above; `t` is the terminal's own settings with echo bits cleared.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            bail!(
                "cannot turn the terminal's echo off: {}",
                std::io::Error::last_os_error()
            );
        }
        write!(self.file, "{prompt}")?;
        self.file.flush()?;
        // Byte by byte: a buffered reader could swallow input meant for later prompts.
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match self.file.read(&mut b)? {
                0 => break,
                _ if b[0] == b'\n' => break,
                _ => {
                    if line.len() >= 4096 {
                        bail!("password longer than 4096 bytes");
                    }
                    line.push(b[0]);
                }
            }
        }
        drop(guard);
        let s = String::from_utf8(line).context("the password is not UTF-8")?;
        Ok(s.trim_end_matches('\r').to_string())
    }
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
