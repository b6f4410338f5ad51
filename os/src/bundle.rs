//! Signed update bundles: what `aergo-image bundle` writes and `aergo-init` verifies before
//! it writes a system slot.
//!
//! # Format (version 1)
//! ```text
//! MAGIC (8 bytes, "AERGOUPD")
//! manifest length (u32 little-endian, ≤ MAX_MANIFEST)
//! manifest (JSON, that many bytes)
//! ed25519 signature (64 bytes) over SIGN_CONTEXT ‖ manifest
//! the parts' bytes, in manifest order
//! ```
//! The manifest names the bundle's format, version, architecture and parts; each part has its
//! size and BLAKE3 hash. The signature covers the manifest, the manifest covers the parts, so
//! a reader verifies the signature before it reads a byte of payload, then the hashes as the
//! parts stream in ([`BundleReader`]). Parts of a system bundle: `esp` (a FAT image holding
//! the unified kernel image at `EFI/BOOT/BOOTX64.EFI`) and `system` (the squashfs).
//!
//! Keys are text files: `aergo-release-public-v1 <64 hex>` and `aergo-release-secret-v1
//! <64 hex>` (the ed25519 seed; keep it offline, mode 0600).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

/// First bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"AERGOUPD";
/// The bundle format this crate reads and writes.
pub const FORMAT: u32 = 1;
/// Longest accepted manifest.
pub const MAX_MANIFEST: u32 = 64 * 1024;
/// Largest accepted part (a system image is tens of MiB).
pub const MAX_PART: u64 = 1 << 30;
/// Domain separation for the signature (a bundle signature is never valid for anything else).
pub const SIGN_CONTEXT: &[u8] = b"AERGO-OS update bundle v1\0";
/// Part holding the slot's EFI system partition image (FAT with the UKI).
pub const PART_ESP: &str = "esp";
/// Part holding the slot's system partition image (squashfs).
pub const PART_SYSTEM: &str = "system";
const PUBLIC_TAG: &str = "aergo-release-public-v1";
const SECRET_TAG: &str = "aergo-release-secret-v1";

/// Why a bundle or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing failed.
    #[error("bundle i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Not a bundle.
    #[error("not an AERGO OS update bundle (bad magic)")]
    BadMagic,
    /// The stream ended early.
    #[error("bundle truncated: it ended inside {0}")]
    Truncated(String),
    /// The manifest is larger than [`MAX_MANIFEST`].
    #[error("bundle manifest of {0} bytes is larger than the limit of {MAX_MANIFEST}")]
    ManifestTooLarge(u32),
    /// The signature does not verify with the release key.
    #[error("bad signature: the bundle was not signed by this appliance's release key, or it was altered")]
    BadSignature,
    /// The manifest is not valid.
    #[error("bad bundle manifest: {0}")]
    BadManifest(String),
    /// Another bundle format.
    #[error("bundle format {0} is not supported (this system reads format {FORMAT})")]
    Format(u32),
    /// Built for another architecture.
    #[error("bundle is for {bundle}, this machine is {machine}")]
    WrongArch {
        /// The bundle's architecture.
        bundle: String,
        /// This machine's.
        machine: String,
    },
    /// A part's bytes do not match its hash.
    #[error("part `{0}` does not match its hash: the bundle was altered or damaged")]
    HashMismatch(String),
    /// Bytes after the last part.
    #[error("bundle has data after its last part")]
    TrailingData,
    /// A key file could not be parsed.
    #[error("bad key: {0}")]
    BadKey(String),
}

/// One payload part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// `esp` or `system`.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// BLAKE3 of the bytes, hex.
    pub blake3: String,
}

/// What the bundle holds (signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The OS version the bundle installs.
    pub version: String,
    /// Target architecture (`x86_64`).
    pub arch: String,
    /// When it was made, Unix seconds.
    pub created_unix: u64,
    /// The parts, in stream order.
    pub parts: Vec<Part>,
}

impl Manifest {
    /// The part named `name`.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// Total payload bytes after the header.
    pub fn payload_bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.size)
            .fold(0, u64::saturating_add)
    }

    fn check(&self, machine_arch: &str) -> Result<(), BundleError> {
        if self.format != FORMAT {
            return Err(BundleError::Format(self.format));
        }
        if self.arch != machine_arch {
            return Err(BundleError::WrongArch {
                bundle: self.arch.clone(),
                machine: machine_arch.to_string(),
            });
        }
        if self.version.is_empty()
            || self.version.len() > 64
            || !self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+~".contains(c))
        {
            return Err(BundleError::BadManifest(format!(
                "version `{}` (1–64 characters of A-Z a-z 0-9 . _ - + ~)",
                self.version
            )));
        }
        let names: Vec<&str> = self.parts.iter().map(|p| p.name.as_str()).collect();
        if names != [PART_ESP, PART_SYSTEM] {
            return Err(BundleError::BadManifest(format!(
                "parts {names:?}, expected [\"{PART_ESP}\", \"{PART_SYSTEM}\"]"
            )));
        }
        for p in &self.parts {
            if p.size == 0 || p.size > MAX_PART {
                return Err(BundleError::BadManifest(format!(
                    "part `{}` has {} bytes (1..={MAX_PART})",
                    p.name, p.size
                )));
            }
            if p.blake3.len() != 64 || !p.blake3.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(BundleError::BadManifest(format!(
                    "part `{}` hash is not 64 hex digits",
                    p.name
                )));
            }
        }
        Ok(())
    }
}

/// This machine's architecture as bundles name it.
pub fn machine_arch() -> &'static str {
    std::env::consts::ARCH
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_key_text(text: &str, tag: &str) -> Result<[u8; 32], BundleError> {
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(unhex32), words.next()) {
        (Some(t), Some(k), None) if t == tag => Ok(k),
        (Some(t), _, _) if t != tag && (t == PUBLIC_TAG || t == SECRET_TAG) => Err(
            BundleError::BadKey(format!("this is a `{t}` file, a `{tag}` is needed")),
        ),
        _ => Err(BundleError::BadKey(format!(
            "expected `{tag} <64 hex digits>`"
        ))),
    }
}

/// A release public key (verifies bundles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        let b = parse_key_text(text, PUBLIC_TAG)?;
        VerifyingKey::from_bytes(&b)
            .map(PublicKey)
            .map_err(|e| BundleError::BadKey(e.to_string()))
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// The text form (one line).
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_TAG} {}\n", hex(self.0.as_bytes()))
    }

    /// Short fingerprint for logs: the first 16 hex digits of the key.
    pub fn fingerprint(&self) -> String {
        hex(self.0.as_bytes()).chars().take(16).collect()
    }
}

/// A release secret key (signs bundles).
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// A new key from the kernel's random source.
    pub fn generate() -> Result<Self, BundleError> {
        let mut seed = [0u8; 32];
        let mut got = 0usize;
        while got < seed.len() {
            let rest = seed.get_mut(got..).unwrap_or(&mut []);
            // SAFETY: getrandom(2) writes at most rest.len() bytes into rest.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n <= 0 {
                return Err(BundleError::Io(std::io::Error::last_os_error()));
            }
            got += n.unsigned_abs();
        }
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        Ok(SecretKey(SigningKey::from_bytes(&parse_key_text(
            text, SECRET_TAG,
        )?)))
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// The text form (one line; secret).
    pub fn to_text(&self) -> String {
        format!("{SECRET_TAG} {}\n", hex(self.0.as_bytes()))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGN_CONTEXT.len() + manifest.len());
    m.extend_from_slice(SIGN_CONTEXT);
    m.extend_from_slice(manifest);
    m
}

/// BLAKE3 of a file, hex, and its length.
fn hash_file(path: &Path) -> Result<(String, u64), BundleError> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or(&[]));
        len += n as u64;
    }
    Ok((h.finalize().to_hex().to_string(), len))
}

/// Writes a bundle of `parts` (name, file) for `version`/`arch`, signed with `key`.
/// Returns the manifest.
pub fn write_bundle<W: Write>(
    out: &mut W,
    key: &SecretKey,
    version: &str,
    arch: &str,
    parts: &[(&str, &Path)],
) -> Result<Manifest, BundleError> {
    let mut list = Vec::new();
    for (name, path) in parts {
        let (blake3, size) = hash_file(path)?;
        list.push(Part {
            name: name.to_string(),
            size,
            blake3,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        version: version.to_string(),
        arch: arch.to_string(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        parts: list,
    };
    manifest.check(arch)?;
    let json =
        serde_json::to_vec(&manifest).map_err(|e| BundleError::BadManifest(e.to_string()))?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|l| *l <= MAX_MANIFEST)
        .ok_or(BundleError::ManifestTooLarge(u32::MAX))?;
    let sig = key.0.sign(&signed_message(&json));
    out.write_all(MAGIC)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&json)?;
    out.write_all(&sig.to_bytes())?;
    for (_, path) in parts {
        let mut f = std::fs::File::open(path)?;
        std::io::copy(&mut f, out)?;
    }
    out.flush()?;
    Ok(manifest)
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), BundleError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => BundleError::Truncated(what.to_string()),
        _ => BundleError::Io(e),
    })
}

/// A part and its bytes, hash checked.
pub type VerifiedPart = (Part, Vec<u8>);

/// Reads a bundle from a stream: [`BundleReader::open`] verifies the header (signature,
/// format, architecture) before any payload is read; [`BundleReader::read_part`] then
/// returns each part's bytes only once they match their hash.
pub struct BundleReader<R: Read> {
    inner: R,
    manifest: Manifest,
    next: usize,
}

impl<R: Read> BundleReader<R> {
    /// Reads and verifies the header with `key`, for a machine of `machine_arch`.
    pub fn open(mut inner: R, key: &PublicKey, machine_arch: &str) -> Result<Self, BundleError> {
        let mut magic = [0u8; 8];
        read_exact_or(&mut inner, &mut magic, "the header")?;
        if &magic != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let mut len = [0u8; 4];
        read_exact_or(&mut inner, &mut len, "the header")?;
        let len = u32::from_le_bytes(len);
        if len > MAX_MANIFEST {
            return Err(BundleError::ManifestTooLarge(len));
        }
        let mut json =
            vec![0u8; usize::try_from(len).map_err(|_| BundleError::ManifestTooLarge(len))?];
        read_exact_or(&mut inner, &mut json, "the manifest")?;
        let mut sig = [0u8; 64];
        read_exact_or(&mut inner, &mut sig, "the signature")?;
        key.0
            .verify(&signed_message(&json), &Signature::from_bytes(&sig))
            .map_err(|_| BundleError::BadSignature)?;
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| BundleError::BadManifest(e.to_string()))?;
        manifest.check(machine_arch)?;
        Ok(BundleReader {
            inner,
            manifest,
            next: 0,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads the next part whole and checks its hash; `None` after the last.
    pub fn read_part(&mut self) -> Result<Option<(Part, Vec<u8>)>, BundleError> {
        let Some(part) = self.manifest.parts.get(self.next).cloned() else {
            return Ok(None);
        };
        self.next += 1;
        let len = usize::try_from(part.size)
            .map_err(|_| BundleError::BadManifest(format!("part `{}` too large", part.name)))?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(len).map_err(|_| {
            BundleError::Io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("no memory for part `{}` ({len} bytes)", part.name),
            ))
        })?;
        let got = (&mut self.inner).take(part.size).read_to_end(&mut buf)?;
        if got as u64 != part.size {
            return Err(BundleError::Truncated(format!("part `{}`", part.name)));
        }
        if blake3::hash(&buf).to_hex().as_str() != part.blake3.to_ascii_lowercase() {
            return Err(BundleError::HashMismatch(part.name.clone()));
        }
        Ok(Some((part, buf)))
    }

    /// Reads every part (verified) and checks nothing follows the last one.
    pub fn read_all(mut self) -> Result<(Manifest, Vec<VerifiedPart>), BundleError> {
        let mut parts = Vec::new();
        while let Some(p) = self.read_part()? {
            parts.push(p);
        }
        let mut extra = [0u8; 1];
        if self.inner.read(&mut extra)? != 0 {
            return Err(BundleError::TrailingData);
        }
        Ok((self.manifest, parts))
    }
}

/// Compares two version strings: dot/dash-separated fields, numerically where both fields
/// are numbers, as text otherwise (`1.10.0` > `1.9.2`, `1.0.0` < `1.0.1-rc1`).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<String> {
        s.split(['.', '-', '+', '~', '_'])
            .map(str::to_string)
            .collect()
    };
    let (x, y) = (split(a), split(b));
    for (p, q) in x.iter().zip(y.iter()) {
        let o = match (p.parse::<u64>(), q.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            _ => p.cmp(q),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    struct Fixture {
        _dir: tempfile::TempDir,
        key: SecretKey,
        bundle: Vec<u8>,
    }

    fn fixture(arch: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let esp = dir.path().join("esp.img");
        let sys = dir.path().join("system.sqfs");
        std::fs::write(&esp, vec![0xE5u8; 70_000]).unwrap();
        std::fs::write(
            &sys,
            (0..200_000u32)
                .map(|i| u8::try_from(i % 251).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let key = SecretKey::generate().unwrap();
        let mut bundle = Vec::new();
        write_bundle(
            &mut bundle,
            &key,
            "1.2.3",
            arch,
            &[(PART_ESP, esp.as_path()), (PART_SYSTEM, sys.as_path())],
        )
        .unwrap();
        Fixture {
            _dir: dir,
            key,
            bundle,
        }
    }

    fn verify(bytes: &[u8], key: &PublicKey) -> Result<(Manifest, Vec<VerifiedPart>), BundleError> {
        BundleReader::open(bytes, key, "x86_64")?.read_all()
    }

    #[test]
    fn round_trip() {
        let f = fixture("x86_64");
        let (m, parts) = verify(&f.bundle, &f.key.public()).unwrap();
        assert_eq!(m.version, "1.2.3");
        assert_eq!(m.arch, "x86_64");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1, vec![0xE5u8; 70_000]);
        assert_eq!(parts[1].1.len(), 200_000);
        assert_eq!(m.payload_bytes(), 270_000);
    }

    #[test]
    fn a_tampered_byte_anywhere_is_refused() {
        let f = fixture("x86_64");
        let pk = f.key.public();
        let header = 8 + 4 + u32::from_le_bytes(f.bundle[8..12].try_into().unwrap()) as usize;
        // In the manifest, the signature, the first part, the second part.
        for (at, want) in [
            (20, "signature"),
            (header + 10, "signature"),
            (header + 64 + 5, "hash esp"),
            (f.bundle.len() - 1, "hash system"),
        ] {
            let mut b = f.bundle.clone();
            b[at] ^= 0x01;
            let e = verify(&b, &pk).unwrap_err();
            match want {
                "signature" => assert!(matches!(e, BundleError::BadSignature), "{at}: {e}"),
                "hash esp" => assert!(
                    matches!(&e, BundleError::HashMismatch(p) if p == "esp"),
                    "{e}"
                ),
                _ => assert!(
                    matches!(&e, BundleError::HashMismatch(p) if p == "system"),
                    "{e}"
                ),
            }
        }
    }

    #[test]
    fn a_tampered_payload_is_refused_before_the_payload_is_returned() {
        let f = fixture("x86_64");
        let mut b = f.bundle.clone();
        let last = b.len() - 1;
        b[last] ^= 0xFF;
        let mut r = BundleReader::open(&b[..], &f.key.public(), "x86_64").unwrap();
        assert!(r.read_part().unwrap().is_some());
        assert!(matches!(r.read_part(), Err(BundleError::HashMismatch(_))));
    }

    #[test]
    fn another_key_is_refused_at_the_header() {
        let f = fixture("x86_64");
        let other = SecretKey::generate().unwrap().public();
        let e = BundleReader::open(&f.bundle[..], &other, "x86_64")
            .err()
            .unwrap();
        assert!(matches!(e, BundleError::BadSignature), "{e}");
        assert!(e.to_string().contains("release key"), "{e}");
    }

    #[test]
    fn truncation_anywhere_is_refused() {
        let f = fixture("x86_64");
        let pk = f.key.public();
        for cut in [0, 5, 11, 40, 200, f.bundle.len() / 2, f.bundle.len() - 1] {
            let e = verify(&f.bundle[..cut], &pk).unwrap_err();
            assert!(
                matches!(e, BundleError::Truncated(_) | BundleError::BadSignature),
                "cut at {cut}: {e}"
            );
            if cut > 300 {
                assert!(e.to_string().contains("truncated"), "{e}");
            }
        }
        let mut longer = f.bundle.clone();
        longer.push(0);
        assert!(matches!(
            verify(&longer, &pk),
            Err(BundleError::TrailingData)
        ));
    }

    #[test]
    fn another_architecture_is_refused() {
        let f = fixture("aarch64");
        let e = verify(&f.bundle, &f.key.public()).unwrap_err();
        assert!(matches!(e, BundleError::WrongArch { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "bundle is for aarch64, this machine is x86_64"
        );
    }

    #[test]
    fn not_a_bundle_and_huge_manifests_are_refused() {
        let pk = SecretKey::generate().unwrap().public();
        assert!(matches!(
            verify(b"PK\x03\x04 zip file....", &pk),
            Err(BundleError::BadMagic)
        ));
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&(MAX_MANIFEST + 1).to_le_bytes());
        assert!(matches!(
            verify(&b, &pk),
            Err(BundleError::ManifestTooLarge(_))
        ));
    }

    #[test]
    fn keys_round_trip_and_refuse_the_wrong_kind() {
        let k = SecretKey::generate().unwrap();
        let back = SecretKey::parse(&k.to_text()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(PublicKey::parse(&k.public().to_text()).unwrap(), k.public());
        let e = PublicKey::parse(&k.to_text()).unwrap_err();
        assert!(e.to_string().contains("aergo-release-public-v1"), "{e}");
        assert!(SecretKey::parse(&k.public().to_text()).is_err());
        assert!(PublicKey::parse("aergo-release-public-v1 abcd").is_err());
        assert!(!format!("{k:?}").contains(&k.to_text()[24..40]));
    }

    #[test]
    fn bad_versions_are_refused_when_writing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"x").unwrap();
        let k = SecretKey::generate().unwrap();
        let e = write_bundle(
            &mut Vec::new(),
            &k,
            "1.0 beta",
            "x86_64",
            &[(PART_ESP, p.as_path()), (PART_SYSTEM, p.as_path())],
        )
        .unwrap_err();
        assert!(matches!(e, BundleError::BadManifest(_)), "{e}");
    }

    #[test]
    fn version_order() {
        assert_eq!(compare_versions("1.10.0", "1.9.2"), Ordering::Greater);
        assert_eq!(compare_versions("1.0.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0.0", "1.0.1-rc1"), Ordering::Less);
        assert_eq!(compare_versions("0.1.0", "0.1.0-b"), Ordering::Less);
        assert_eq!(compare_versions("2", "10"), Ordering::Less);
    }
}
