//! aergo-image: builds the AERGO OS initramfs and the flashable GPT disk image.
//!
//! Steps: find the kernel → resolve kernel modules from `modules.dep` → collect our release
//! binaries and the shared libraries `ldd` lists for them → the system partition (squashfs:
//! service binaries and their libraries, mounted at `/usr`) → the initramfs (cpio newc, zstd:
//! init, its libraries, kernel modules, config) → the unified kernel image (UKI) → FAT ESP →
//! pre-formatted ext4 `AERGO-DATA` holding `/etc/aergo.toml` → assemble the GPT disk.
//! Outputs (in the `--out` folder): `aergo-os.img` plus `vmlinuz`, `vmlinux`,
//! `initramfs.img` and `cmdline.txt` for direct kernel boot (with the same disk attached:
//! the services live on its system partition).
//!
//! Subcommands: `keygen --out DIR` makes an ed25519 release key pair (`release.pub`,
//! `release.key`); `bundle … --release-key SECRET --version V --out FILE` builds the same
//! slot contents (ESP image with the UKI, squashfs) and writes them as a signed update
//! bundle ([`aergo_os::bundle`]) instead of a disk image; `kernel` builds (or finds) the
//! embedded kernel in its cache (`embedded.rs`). `--release-key PUB` on an image
//! build bakes the public key into the initramfs (`/etc/aergo/release.pub`): init accepts
//! only bundles it verifies.
//!
//! Keeping the big binaries out of the initramfs keeps the UKI small (~12 MiB instead of
//! ~34 MiB), which the firmware reads and the kernel unpacks on every boot; the system
//! partition is read on demand, page by page, by the kernel's own disk driver.

mod cpio;
mod disk;
mod embedded;
mod kernel;
mod libs;

use aergo_os::bundle::{PublicKey, SecretKey};
use aergo_os::config::Config;
use aergo_os::sys::modules::{canonical, Aliases, ModuleDb, ALIAS_LIST, DEP_LIST, LOAD_LIST};
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The default appliance configuration: a single dev node.
pub const DEFAULT_CONFIG: &str = r#"# AERGO OS appliance configuration (/data/etc/aergo.toml).
[node]
dev = true
data_dir = "/data/chain"
rpc_addr = "0.0.0.0:7845"

[fs]
enabled = true
dir = "/data/fs"
addr = "0.0.0.0:7848"

[system]
ntp_servers = []
"#;

/// Binaries placed in the system partition's `/usr/bin` (`/bin` links there) when built;
/// init itself becomes the initramfs's `/init`.
const SERVICE_BINARIES: &[&str] = &["aergo-node", "aergofs", "aergo-top"];

#[derive(Parser, Debug)]
#[command(
    name = "aergo-image",
    about = "Build the AERGO OS initramfs and UEFI disk image",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    build: Args,
}

// Parsed once per run: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Make an ed25519 release key pair: DIR/release.pub (bake it into images with
    /// --release-key) and DIR/release.key (secret, mode 0600: signs bundles; keep offline).
    Keygen {
        /// Folder for the two files (created; existing keys are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a signed update bundle (slot ESP with the UKI + system squashfs + manifest)
    /// instead of a disk image: the build flags are the same, --release-key is the SECRET
    /// key, --version is required and --out is the bundle file.
    Bundle(Args),
    /// Build the embedded kernel into its cache (or find it there) and print where it is:
    /// what the first `--kernel embedded` image would otherwise do (scripts/test.sh runs it
    /// before the tests, so a cold cache's build shows as its own step).
    Kernel,
}

#[derive(clap::Args, Debug)]
struct Args {
    /// Image builds: the release PUBLIC key to bake in (init then installs only bundles
    /// signed with its secret). Bundles: the release SECRET key that signs it.
    #[arg(long)]
    release_key: Option<PathBuf>,
    /// Version string of this build (default: the crate version); bundles need one.
    #[arg(long)]
    version: Option<String>,
    /// Output image path (the kernel, initramfs and cmdline for direct boot go beside it).
    #[arg(long, default_value = "target/image/aergo-os.img")]
    out: PathBuf,
    /// Folder holding the release binaries (default: this program's own folder).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// An aergo.toml to bake into the image (default: single-node dev chain).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kernel: `embedded` (the appliance's own, built from image/kernel/aergo-x86_64.config
    /// and cached in $AERGO_KERNEL_CACHE or /var/cache/aergo-kernel), `debian` (the newest
    /// /boot/vmlinuz-* with modules) or the path of a `vmlinuz-<release>` with its modules.
    #[arg(long, default_value = "embedded")]
    kernel: kernel::Choice,
    /// Root of the kernel module trees.
    #[arg(long, default_value = "/lib/modules")]
    modules_root: PathBuf,
    /// systemd-boot's EFI stub used for the unified kernel image.
    #[arg(long, default_value = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub")]
    stub: PathBuf,
    /// Console for the dashboard: auto, ttyS0 or tty1.
    #[arg(long, default_value = "auto")]
    console: String,
    /// Extra kernel command-line words.
    #[arg(long, default_value = "")]
    cmdline_extra: String,
    /// Data partition size in MiB (init grows it to the disk on first boot).
    #[arg(long, default_value_t = 32)]
    data_mib: u64,
    /// zstd compression level for the initramfs (19: 0.19 MB smaller than 9, decompressed
    /// as fast).
    #[arg(long, default_value_t = 19)]
    zstd_level: u32,
    /// Compression of the system partition (squashfs). `none` (the default): the image is
    /// distributed compressed (`--download`: ≤ 30 MB, the outer compressor sees the whole
    /// system at once and finds more than squashfs's 1 MiB blocks do) and the appliance
    /// reads its programs without decompressing them; `zstd` makes a raw image and bundle
    /// less than half as large, for a download ~4 MB larger.
    #[arg(long, value_enum, default_value = "none")]
    system_compression: disk::SquashComp,
    /// zstd level for the system partition (levels above 9 take much longer for ~1 % less).
    #[arg(long, default_value_t = 9)]
    squashfs_level: u32,
    /// Do not strip binaries.
    #[arg(long)]
    no_strip: bool,
    /// A file to place in the data partition's /data/etc, as `SRC` or `SRC=NAME`
    /// (repeatable): a genesis, a node key (written 0600 when its name ends in `.key`).
    #[arg(long = "etc-file")]
    etc_files: Vec<String>,
    /// Also keep this persistent VM disk in step with the image (created when absent;
    /// otherwise only its boot partition is replaced, so the chain data survives).
    #[arg(long)]
    update_disk: Option<PathBuf>,
    /// Size of a disk created by --update-disk, in GiB.
    #[arg(long, default_value_t = 4)]
    disk_gib: u64,
    /// Also write the download artifact beside the image, OUT.xz or OUT.zst (what a provider
    /// fetches and flashes; both decompress with the plain tools, `xz -dc` / `zstd -dc`).
    #[arg(long, value_enum)]
    download: Option<Download>,
}

/// The compressed image to publish (`--download`). Both see the whole image at once, so
/// they find the repeats between the binaries that squashfs's 1 MiB blocks cannot.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Download {
    /// `xz --x86 --lzma2=preset=6`: the smallest (the x86 branch filter makes the
    /// programs' call targets repeat); ~4 s to decompress.
    Xz,
    /// `zstd --ultra -22 --long=27`: ~1.5 MB larger, decompresses several times faster;
    /// its 128 MiB window is within what `zstd -d` accepts without `--long`.
    Zst,
}

impl Download {
    fn extension(self) -> &'static str {
        match self {
            Download::Xz => "xz",
            Download::Zst => "zst",
        }
    }

    fn command(self) -> Command {
        let mut c = match self {
            Download::Xz => Command::new("xz"),
            Download::Zst => Command::new("zstd"),
        };
        match self {
            // Multi-threaded xz cuts the input into blocks of 3 × the dictionary whatever
            // the thread count, so the output does not depend on the machine.
            Download::Xz => c.args(["-T0", "--x86", "--lzma2=preset=6", "-c"]),
            // One job: the image is smaller than zstd's job size at this window.
            Download::Zst => c.args(["-q", "-T0", "--ultra", "-22", "--long=27", "-c"]),
        };
        c
    }
}

/// Compresses `image` into `image.EXT` (through a temporary file) and returns its path.
fn write_download(image: &Path, format: Download) -> Result<PathBuf> {
    let out = PathBuf::from(format!("{}.{}", image.display(), format.extension()));
    let tmp = out.with_extension(format!("{}.partial", format.extension()));
    let input =
        std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let output =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let done = output
        .try_clone()
        .and_then(|stdout| format.command().stdin(input).stdout(stdout).status())
        .with_context(|| {
            format!(
                "running {:?} (scripts/setup.sh installs it)",
                format.command().get_program()
            )
        })
        .and_then(|status| {
            if !status.success() {
                bail!("compressing {} failed: {status}", image.display());
            }
            output.sync_all()?;
            std::fs::rename(&tmp, &out)?;
            Ok(())
        });
    if let Err(e) = done {
        // Never leave a partial artifact beside the image.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(out)
}

/// `SRC` or `SRC=NAME` → (source, plain file name under /data/etc).
fn etc_file_spec(spec: &str) -> Result<(PathBuf, String)> {
    let (src, name) = match spec.split_once('=') {
        Some((s, n)) => (PathBuf::from(s), n.to_string()),
        None => {
            let p = PathBuf::from(spec);
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (p, n)
        }
    };
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name != "aergo.toml"
        && !name.contains('/');
    if !plain {
        bail!("--etc-file {spec}: the name must be a plain file name other than aergo.toml");
    }
    if !src.is_file() {
        bail!("--etc-file {spec}: {} is not a file", src.display());
    }
    Ok((src, name))
}

struct Progress {
    step: usize,
    total: usize,
    started: Instant,
    step_started: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            step: 0,
            total,
            started: Instant::now(),
            step_started: Instant::now(),
        }
    }
    fn begin(&mut self, what: &str) {
        self.step += 1;
        self.step_started = Instant::now();
        eprint!("[{}/{}] {what} … ", self.step, self.total);
        let _ = std::io::stderr().flush();
    }
    fn done(&self, note: &str) {
        eprintln!(
            "{note} ({:.1} s)",
            self.step_started.elapsed().as_secs_f64()
        );
    }
}

fn human(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `aergo-image keygen --out DIR`.
fn keygen(dir: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let (public, secret) = (dir.join("release.pub"), dir.join("release.key"));
    for p in [&public, &secret] {
        if p.exists() {
            bail!("{} exists: not overwriting a release key", p.display());
        }
    }
    let key = SecretKey::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)?;
    f.write_all(key.to_text().as_bytes())?;
    f.sync_all()?;
    std::fs::write(&public, key.public().to_text())?;
    eprintln!(
        "release key {}: {} (public, bake into images) and {} (secret: signs bundles; keep it offline)",
        key.public().fingerprint(),
        public.display(),
        secret.display()
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Some(Cmd::Keygen { out }) => keygen(&out),
        Some(Cmd::Bundle(args)) => run(args, true),
        Some(Cmd::Kernel) => kernel_only(),
        None => run(cli.build, false),
    };
    if let Err(e) = r {
        eprintln!("\naergo-image: error: {e:#}");
        std::process::exit(1);
    }
}

/// `aergo-image kernel`.
fn kernel_only() -> Result<()> {
    let started = Instant::now();
    let b = embedded::ensure(&embedded::cache_root(), &mut |msg| eprintln!("{msg} …"))?;
    eprintln!(
        "embedded kernel {}: {} ({}; bzImage {}, config {})",
        b.release,
        b.dir.display(),
        if b.cached {
            format!("cached, built in {:.0} s", b.build_seconds)
        } else {
            format!("built now in {:.0} s", started.elapsed().as_secs_f64())
        },
        human(std::fs::metadata(&b.bzimage)?.len()),
        b.dir.join("config").display()
    );
    Ok(())
}

fn strip_into(src: &Path, dst: &Path, strip: bool) -> Result<()> {
    if strip {
        let st = Command::new("strip")
            .args(["--strip-all", "-o"])
            .arg(dst)
            .arg(src)
            .status();
        if matches!(st, Ok(s) if s.success()) {
            return Ok(());
        }
    }
    std::fs::copy(src, dst).with_context(|| format!("copying {}", src.display()))?;
    Ok(())
}

/// Copies `src` (following symlinks) to `dst`, creating folders, with `mode`.
fn place(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Total bytes of the regular files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// An identifier shared by one build's initramfs and system partition, so init can tell
/// when a disk's system partition does not belong to the kernel it booted.
fn build_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{:x}\n", std::process::id())
}

/// The release keys of a build: the public key baked in, and for a bundle the secret that
/// signs it.
fn release_keys(args: &Args, bundle: bool) -> Result<(Option<PublicKey>, Option<SecretKey>)> {
    let Some(path) = &args.release_key else {
        if bundle {
            bail!("a bundle needs --release-key SECRET (aergo-image keygen makes one)");
        }
        return Ok((None, None));
    };
    if bundle {
        let s = SecretKey::load(path)
            .with_context(|| format!("--release-key {}: a secret key", path.display()))?;
        Ok((Some(s.public()), Some(s)))
    } else {
        let p = PublicKey::load(path).with_context(|| {
            format!(
                "--release-key {}: image builds take the PUBLIC key (release.pub)",
                path.display()
            )
        })?;
        Ok((Some(p), None))
    }
}

fn run(args: Args, bundle: bool) -> Result<()> {
    let mut p = Progress::new(9);
    let (release_pub, release_secret) = release_keys(&args, bundle)?;
    if bundle && args.version.is_none() {
        bail!("a bundle needs --version V (the version it installs)");
    }
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    let final_dir = args
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // A bundle's kernel/initramfs copies for direct boot are scratch: keep them out of the
    // folder (it may hold an image's).
    let out_dir = if bundle {
        args.out.with_extension("bundle.d")
    } else {
        final_dir.clone()
    };
    std::fs::create_dir_all(&out_dir)?;
    std::fs::create_dir_all(&final_dir)?;
    let work = out_dir.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(work.join("bin"))?;
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("cannot find this program's folder")?,
    };

    // Config.
    let config_text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => DEFAULT_CONFIG.to_string(),
    };
    Config::from_toml(
        &config_text,
        args.config.as_deref().unwrap_or(Path::new("default")),
    )
    .context("the config to bake is invalid")?;

    p.begin("finding kernel");
    let k = kernel::select(&args.kernel, &args.modules_root, &mut |msg| {
        eprint!("\n  {msg} … ");
    })?;
    p.done(&format!("{} ({})", k.release, k.origin));

    p.begin("resolving kernel modules");
    // A kernel without modules (the embedded one) has everything built in: empty lists.
    let read_mod = |name: &str| {
        k.modules_dir
            .as_ref()
            .map(|d| std::fs::read_to_string(d.join(name)))
            .transpose()
            .with_context(|| format!("reading {name}"))
    };
    let dep = read_mod("modules.dep")?.unwrap_or_default();
    let soft = read_mod("modules.softdep")
        .unwrap_or_default()
        .unwrap_or_default();
    let db = ModuleDb::parse(&dep, &soft);
    let mut skipped = Vec::new();
    let wanted: Vec<&str> = kernel::WANTED_MODULES
        .iter()
        .copied()
        .filter(|m| {
            let ok = db.contains(m);
            if !ok {
                skipped.push(*m);
            }
            ok
        })
        .collect();
    let order = db.resolve(&wanted)?;
    p.done(&if k.modules_dir.is_none() {
        "none: the kernel has its drivers built in".to_string()
    } else {
        format!(
            "{} modules{}",
            order.len(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" (not modules, skipped: {})", skipped.join(", "))
            }
        )
    });

    p.begin("collecting binaries and shared libraries");
    let init_src = bin_dir.join("aergo-init");
    if !init_src.exists() {
        bail!(
            "{} not found: cargo build --release -p aergo-init",
            init_src.display()
        );
    }
    let mut bins = vec![("init".to_string(), init_src)];
    let mut missing = Vec::new();
    for name in SERVICE_BINARIES {
        let src = bin_dir.join(name);
        if src.exists() {
            bins.push((format!("bin/{name}"), src));
        } else {
            missing.push(*name);
        }
    }
    // mke2fs lets init format a blank data partition when the config allows it.
    for tool in ["/usr/sbin/mke2fs", "/sbin/mke2fs"] {
        if Path::new(tool).exists() {
            bins.push(("sbin/mke2fs".to_string(), PathBuf::from(tool)));
            break;
        }
    }
    let mut staged = Vec::new();
    for (dest, src) in &bins {
        let name = src
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let tmp = work.join("bin").join(name);
        strip_into(src, &tmp, !args.no_strip)?;
        staged.push((dest.clone(), tmp));
    }
    // init's libraries go into the initramfs (it runs before the system partition is
    // mounted); the services' other libraries into the system partition.
    let (init_bins, service_bins): (Vec<_>, Vec<_>) =
        staged.iter().partition(|(dest, _)| dest == "init");
    let init_libs = libs::resolve(&init_bins.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>())?;
    let service_libs: Vec<PathBuf> = libs::resolve(
        &service_bins
            .iter()
            .map(|(_, p)| p.clone())
            .collect::<Vec<_>>(),
    )?
    .into_iter()
    .filter(|l| !init_libs.contains(l))
    .collect();
    p.done(&format!(
        "{} binaries, {} libraries{}",
        staged.len(),
        init_libs.len() + service_libs.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                " (not built, reported missing at boot: {})",
                missing.join(", ")
            )
        }
    ));
    let build_id = build_id();

    p.begin("building system partition (squashfs)");
    let sys_root = work.join("system");
    let mut initramfs_libs: Vec<PathBuf> = init_libs.iter().cloned().collect();
    for (dest, src) in &service_bins {
        let rel = libs::system_path(Path::new(&format!("/usr/{dest}")))
            .with_context(|| format!("no system path for {dest}"))?;
        place(src, &sys_root.join(rel), 0o755)?;
    }
    for lib in &service_libs {
        match libs::system_path(lib) {
            Some(rel) => place(lib, &sys_root.join(rel), 0o755)?,
            // Outside /lib and /usr/lib: keep it at its own path in the initramfs.
            None => initramfs_libs.push(lib.clone()),
        }
    }
    std::fs::create_dir_all(sys_root.join("share/aergo"))?;
    std::fs::write(sys_root.join("share/aergo/build-id"), &build_id)?;
    std::fs::write(sys_root.join("share/aergo/version"), format!("{version}\n"))?;
    let sys_raw = dir_bytes(&sys_root);
    let sqfs = work.join("system.sqfs");
    disk::build_squashfs(
        &sys_root,
        args.system_compression,
        args.squashfs_level,
        &sqfs,
    )?;
    let sqfs_len = std::fs::metadata(&sqfs)?.len();
    p.done(&format!(
        "{} → {} squashfs",
        human(sys_raw),
        human(sqfs_len)
    ));

    p.begin("writing initramfs");
    let mut a = cpio::Archive::new();
    for d in [
        "proc", "sys", "dev", "run", "tmp", "data", "etc", "var", "root", "usr",
    ] {
        a.dir(d);
    }
    // Service binaries and tools live on the system partition mounted at /usr.
    a.add("bin", cpio::Entry::Symlink("usr/bin".into()));
    a.add("sbin", cpio::Entry::Symlink("usr/sbin".into()));
    a.add("dev/console", cpio::Entry::CharDev(0o600, 5, 1));
    a.add("dev/null", cpio::Entry::CharDev(0o666, 1, 3));
    for (dest, src) in &init_bins {
        a.file(dest, 0o755, std::fs::read(src)?);
    }
    for lib in &initramfs_libs {
        a.file(&lib.display().to_string(), 0o755, libs::read(lib)?);
    }
    a.file("etc/aergo/build-id", 0o644, build_id.clone().into_bytes());
    a.file(
        "etc/aergo/version",
        0o644,
        format!("{version}\n").into_bytes(),
    );
    if let Some(k) = &release_pub {
        a.file("etc/aergo/release.pub", 0o644, k.to_text().into_bytes());
    }
    let mod_base = format!("lib/modules/{}", k.release);
    if let Some(dir) = &k.modules_dir {
        for rel in &order {
            let data = std::fs::read(dir.join(rel))?;
            a.file(&format!("{mod_base}/{rel}"), 0o644, data);
        }
    }
    let always: Vec<&str> = kernel::ALWAYS_MODULES
        .iter()
        .copied()
        .filter(|m| db.contains(m))
        .collect();
    let always_order = db.resolve(&always)?;
    a.file(
        &format!("{mod_base}/{LOAD_LIST}"),
        0o644,
        (always_order.join("\n") + "\n").into_bytes(),
    );
    a.file(
        &format!("{mod_base}/{DEP_LIST}"),
        0o644,
        db.subset_text(&order).into_bytes(),
    );
    let mut aliases = Aliases::parse(&read_mod("modules.alias").ok().flatten().unwrap_or_default());
    let names: std::collections::BTreeSet<String> = order.iter().map(|p| canonical(p)).collect();
    aliases.retain_modules(&names);
    a.file(
        &format!("{mod_base}/{ALIAS_LIST}"),
        0o644,
        aliases.to_text().into_bytes(),
    );
    let osrel = format!(
        "NAME=\"AERGO OS\"\nID=aergo\nVERSION_ID={v}\nPRETTY_NAME=\"AERGO OS {v}\"\n",
        v = version
    );
    a.file("etc/os-release", 0o644, osrel.clone().into_bytes());
    a.file(
        "etc/aergo/aergo.toml",
        0o644,
        config_text.clone().into_bytes(),
    );
    a.file(
        "etc/hosts",
        0o644,
        b"127.0.0.1 localhost\n::1 localhost\n".to_vec(),
    );
    a.file("etc/nsswitch.conf", 0o644, b"hosts: files dns\n".to_vec());
    a.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/init\n".to_vec(),
    );
    a.file("etc/group", 0o644, b"root:x:0:\n".to_vec());
    if !a.contains("init") {
        bail!("the initramfs has no /init");
    }
    let initrd = out_dir.join("initramfs.img");
    let raw_len = a.payload_bytes();
    let mut z = Command::new("zstd")
        .args(["-q", "-T0", &format!("-{}", args.zstd_level), "-f", "-o"])
        .arg(&initrd)
        .stdin(Stdio::piped())
        .spawn()
        .context("running zstd (scripts/setup.sh installs it)")?;
    {
        let stdin = z.stdin.as_mut().context("zstd stdin")?;
        let mut w = std::io::BufWriter::new(stdin);
        a.write(&mut w)?;
        w.flush()?;
    }
    drop(z.stdin.take());
    if !z.wait()?.success() {
        bail!("zstd failed");
    }
    let initrd_len = std::fs::metadata(&initrd)?.len();
    p.done(&format!(
        "{} entries, {} → {} zstd",
        a.entry_count(),
        human(raw_len),
        human(initrd_len)
    ));

    p.begin("building unified kernel image");
    let mut cmdline = format!(
        "console=tty0 console=ttyS0,115200n8 panic=-1 aergo.console={}",
        args.console
    );
    if !args.cmdline_extra.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(args.cmdline_extra.trim());
    }
    let uki = work.join("BOOTX64.EFI");
    if !args.stub.exists() {
        bail!(
            "EFI stub {} not found (apt-get install systemd-boot-efi: scripts/setup.sh)",
            args.stub.display()
        );
    }
    disk::build_uki(&args.stub, &k.image, &initrd, &cmdline, &osrel, &work, &uki)?;
    std::fs::copy(&k.image, out_dir.join("vmlinuz"))?;
    let pvh = match &k.vmlinux {
        Some(v) => std::fs::copy(v, out_dir.join("vmlinux")).is_ok(),
        None => kernel::extract_vmlinux(&k.image, &out_dir.join("vmlinux")).unwrap_or(false),
    };
    std::fs::write(out_dir.join("cmdline.txt"), &cmdline)?;
    let uki_len = std::fs::metadata(&uki)?.len();
    p.done(&human(uki_len));

    p.begin("building EFI system partition");
    let esp_len = disk::esp_size(uki_len);
    let esp = work.join("esp.img");
    disk::build_esp(&uki, esp_len, &esp)?;
    p.done(&human(esp_len));

    p.begin("building ext4 data partition");
    let data_root = work.join("data");
    for d in ["etc", "chain", "fs", "log"] {
        std::fs::create_dir_all(data_root.join(d))?;
    }
    std::fs::write(data_root.join("etc/aergo.toml"), &config_text)?;
    for spec in &args.etc_files {
        let (src, name) = etc_file_spec(spec)?;
        let dest = data_root.join("etc").join(&name);
        std::fs::copy(&src, &dest)
            .with_context(|| format!("--etc-file {}: cannot copy {}", spec, src.display()))?;
        if name.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let data_len = args.data_mib.max(16) * 1024 * 1024;
    let data_img = work.join("data.ext4");
    disk::build_ext4(&data_root, data_len, &data_img)?;
    p.done(&human(data_len));

    if let Some(secret) = &release_secret {
        p.begin("writing signed update bundle");
        let tmp = args.out.with_extension("partial");
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let m = aergo_os::bundle::write_bundle(
            &mut w,
            secret,
            &version,
            aergo_os::bundle::machine_arch(),
            &[
                (aergo_os::bundle::PART_ESP, esp.as_path()),
                (aergo_os::bundle::PART_SYSTEM, sqfs.as_path()),
            ],
        )?;
        w.into_inner()
            .map_err(|e| anyhow::anyhow!("writing the bundle: {e}"))?
            .sync_all()?;
        std::fs::rename(&tmp, &args.out)?;
        let _ = std::fs::remove_dir_all(&out_dir);
        p.done(&format!(
            "{} ({}: ESP {}, system {}), signed by {}",
            args.out.display(),
            m.version,
            human(esp_len),
            human(sqfs_len),
            secret.public().fingerprint()
        ));
        return Ok(());
    }
    p.begin("assembling GPT disk image");
    let layout = disk::plan(esp_len, disk::system_size(sqfs_len), data_len)?;
    disk::assemble(&layout, &esp, &sqfs, &data_img, &args.out)?;
    p.done(&args.out.display().to_string());
    let _ = std::fs::remove_dir_all(&work);

    if let Some(d) = &args.update_disk {
        let what = disk::update_disk(&args.out, d, args.disk_gib << 30)?;
        eprintln!("persistent disk {}: {what:?}", d.display());
    }
    let download = match args.download {
        Some(format) => {
            let t = Instant::now();
            eprint!("writing the download artifact ({format:?}) … ");
            let path = write_download(&args.out, format)?;
            let len = std::fs::metadata(&path)?.len();
            eprintln!("{len} bytes ({:.1} s)", t.elapsed().as_secs_f64());
            format!("\n  download   {} ({len} bytes)", path.display())
        }
        None => String::new(),
    };
    let kernel_len = std::fs::metadata(&k.image)?.len();
    eprintln!(
        "\nAERGO OS image built in {:.1} s\n  kernel     {} ({})\n  initramfs  {} (zstd; {} unpacked)\n  UKI        {}\n  system     {} squashfs ({} unpacked) in a {} partition\n  image      {} raw: {}{download}\n  direct boot: {}/vmlinuz{}, initramfs.img, cmdline.txt (with the disk attached)",
        p.started.elapsed().as_secs_f64(),
        human(kernel_len),
        k.release,
        human(initrd_len),
        human(raw_len),
        human(uki_len),
        human(sqfs_len),
        human(sys_raw),
        human(layout.system().1),
        human(layout.total),
        args.out.display(),
        out_dir.display(),
        if pvh { " (or vmlinux: PVH, no decompression)" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_artifacts_decompress_with_the_plain_tools() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("aergo-os.img");
        // Sparse zeros with data at both ends, like the image.
        let mut data: Vec<u8> = (0..1u32 << 20)
            .flat_map(|i| (i % 7919).to_le_bytes())
            .collect();
        data.resize(16 << 20, 0);
        data.extend((0..1u32 << 18).map(|i| u8::try_from(i % 241).unwrap()));
        std::fs::write(&img, &data).unwrap();
        for (format, tool) in [(Download::Xz, "xz"), (Download::Zst, "zstd")] {
            let out = write_download(&img, format).unwrap();
            assert_eq!(
                out.file_name().unwrap().to_str().unwrap(),
                format!("aergo-os.img.{}", format.extension())
            );
            let len = std::fs::metadata(&out).unwrap().len();
            assert!(len < data.len() as u64 / 4, "{format:?}: {len}");
            // No `--long`, no memory flag: what an operator types.
            let back = Command::new(tool).arg("-dc").arg(&out).output().unwrap();
            assert!(
                back.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&back.stderr)
            );
            assert!(back.stdout == data, "{tool} gave back other bytes");
        }
        assert!(!dir.path().join("aergo-os.img.zst.partial").exists());
    }

    #[test]
    fn etc_file_specs() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("genesis.json");
        std::fs::write(&f, "{}").unwrap();
        let s = f.display().to_string();
        assert_eq!(etc_file_spec(&s).unwrap().1, "genesis.json");
        assert_eq!(etc_file_spec(&format!("{s}=g.json")).unwrap().1, "g.json");
        for bad in [
            format!("{s}=aergo.toml"),
            format!("{s}=../x"),
            format!("{s}="),
            "/nonexistent=x".to_string(),
        ] {
            assert!(etc_file_spec(&bad).is_err(), "{bad}");
        }
    }
}
