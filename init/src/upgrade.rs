//! A/B system slots on the appliance: which slot booted, installing a signed bundle into the
//! other one, and the trial that commits it or falls back.
//!
//! - **Which slot booted**: systemd-stub (the UKI's EFI stub) sets `LoaderDevicePartUUID` to
//!   the partition the UKI was loaded from; init maps it to `AERGO-ESP-A`/`-B` through the
//!   GPT. Without UEFI (direct kernel boot) `aergo.slot=` on the command line, else `A`.
//! - **Install** (`upgrade` control op, [`install`]): the bundle's header is verified
//!   (signature with `/etc/aergo/release.pub`, format, architecture) before its payload is
//!   read, the version checked against the running one, the parts checked to fit the
//!   inactive slot's partitions, the payload read into memory and every hash checked; only
//!   then is the inactive slot written (system partition, then ESP), read back, fsynced.
//!   Then `slots.json` records the slot as `trying`, a `Boot####` option for it is written
//!   and `BootNext` points at it: the firmware boots it once.
//! - **Trial** ([`Trial`]): on that boot init waits for the node to be healthy for
//!   `commit_after_secs` with the chain grown meanwhile, then commits (the slot goes first in
//!   `BootOrder`). Not healthy within `trial_timeout_secs` (or not committed within both):
//!   the slot is marked bad and init reboots; `BootOrder` still starts with the old slot.
//!   A crash, kernel panic, watchdog reset or power cut during the trial also ends in the
//!   old slot, because `BootNext` is spent.

use crate::ctl::Ctx;
use crate::data;
use crate::logs::LogStore;
use aergo_os::bundle::{
    compare_versions, machine_arch, BundleReader, PublicKey, VerifiedPart, PART_ESP,
};
use aergo_os::slots::{esp_label, other, system_label, BootVerdict, SlotInfo, Slots, SLOTS_FILE};
use aergo_os::sys::efi;
use aergo_os::sys::gpt::Gpt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// The release public key baked into the initramfs.
pub const RELEASE_KEY: &str = "/etc/aergo/release.pub";
/// This build's version (initramfs).
pub const VERSION_FILE: &str = "/etc/aergo/version";
/// Largest bundle accepted over the control channel.
pub const MAX_BUNDLE: u64 = 2 << 30;

/// This build's version string.
pub fn own_version() -> String {
    std::fs::read_to_string(VERSION_FILE)
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

/// The slot this boot runs and how that was decided.
#[derive(Debug, Clone)]
pub struct SlotBoot {
    /// `A` or `B`.
    pub running: String,
    /// Whether the firmware told us (UEFI): only then can upgrades arm a one-time boot.
    pub uefi: bool,
    /// The disk holding the slots (`/dev/vda`), when it has them.
    pub disk: Option<std::path::PathBuf>,
}

/// Mounts efivarfs once its module is loaded (under UEFI only).
pub fn mount_efivarfs(logs: &LogStore, modules_done: &crate::sys::Latch) -> bool {
    if !Path::new("/sys/firmware/efi").exists() {
        return false;
    }
    if crate::sys::is_mounted(efi::EFIVARS) {
        return true;
    }
    if !crate::sys::wait_filesystem("efivarfs", modules_done, Duration::from_secs(10)) {
        logs.init(
            4,
            "the kernel has no efivarfs: A/B upgrades are unavailable",
        );
        return false;
    }
    match crate::sys::mount(
        "efivarfs",
        efi::EFIVARS,
        "efivarfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ) {
        Ok(()) => true,
        Err(e) => {
            logs.init(3, &format!("mount efivarfs: {e}"));
            false
        }
    }
}

/// Reads a UEFI variable's value (without the attribute bytes).
fn read_var(name: &str, guid: &str) -> Option<Vec<u8>> {
    let b = std::fs::read(efi::var_path(name, guid)).ok()?;
    b.get(4..).map(<[u8]>::to_vec)
}

/// Writes a UEFI variable (non-volatile, boot and runtime access), clearing efivarfs's
/// immutable flag on an existing one first.
fn write_var(name: &str, guid: &str, value: &[u8]) -> std::io::Result<()> {
    let path = efi::var_path(name, guid);
    if let Ok(f) = std::fs::File::open(&path) {
        use std::os::fd::AsRawFd;
        const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
        const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
        const FS_IMMUTABLE_FL: libc::c_long = 0x10;
        let mut flags: libc::c_long = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`, which outlives the call.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) };
        if r == 0 && flags & FS_IMMUTABLE_FL != 0 {
            flags &= !FS_IMMUTABLE_FL;
            // SAFETY: FS_IOC_SETFLAGS reads one long from `flags`, which outlives the call.
            let _ = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags) };
        }
    }
    let mut buf = efi::ATTR_NV_BS_RT.to_le_bytes().to_vec();
    buf.extend_from_slice(value);
    // No truncate: efivarfs replaces a variable's value with each write.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // efivarfs takes a variable in one write.
    let n = f.write(&buf)?;
    if n != buf.len() {
        return Err(std::io::Error::other(format!(
            "short write of {name} ({n} of {} bytes)",
            buf.len()
        )));
    }
    Ok(())
}

fn read_gpt(disk: &Path) -> std::io::Result<Gpt> {
    let mut f = std::fs::File::open(disk)?;
    let len = data::device_size(&f)?;
    Gpt::read(&mut f, len).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Finds the running slot (see the module docs). Waits for slot A's ESP to appear.
pub fn detect(logs: &LogStore, efivars: bool) -> SlotBoot {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let disk = data::wait_partition(&esp_label("A"), Duration::from_secs(15)).map(|p| p.disk_dev());
    if disk.is_none() {
        logs.init(4, "no A/B slots on the disk (no AERGO-ESP-A partition)");
    }
    if efivars {
        let uuid =
            read_var("LoaderDevicePartUUID", efi::LOADER).and_then(|v| efi::parse_partuuid(&v));
        let found = match (&disk, uuid) {
            (Some(d), Some(u)) => read_gpt(d).ok().and_then(|g| {
                g.partitions
                    .iter()
                    .find(|p| p.guid == u)
                    .and_then(|p| p.name.strip_prefix("AERGO-ESP-").map(str::to_string))
            }),
            _ => None,
        };
        if let Some(slot) = found {
            return SlotBoot {
                running: slot,
                uefi: true,
                disk,
            };
        }
        logs.init(
            4,
            "the firmware did not say which ESP booted (LoaderDevicePartUUID): assuming slot A",
        );
    }
    let running = match crate::sys::cmdline_value(&cmdline, "aergo.slot").as_deref() {
        Some("B") | Some("b") => "B".to_string(),
        _ => "A".to_string(),
    };
    SlotBoot {
        running,
        uefi: false,
        disk,
    }
}

/// Writes `slots.json` durably (temporary file, fsync, rename, fsync of the folder).
pub fn save(slots: &Slots) -> std::io::Result<()> {
    save_to(Path::new(SLOTS_FILE), slots)
}

/// [`save`] to `path`.
pub fn save_to(path: &Path, slots: &Slots) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(slots.to_json().as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // A full disk leaves a partial temporary file: do not let it take more room.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    data::fsync_dir(path)
}

/// The trial of a newly booted slot.
#[derive(Debug, Clone)]
pub struct Trial {
    /// When it began (monotonic).
    pub started: Duration,
    /// Since when the node has been running healthy.
    pub healthy_since: Option<Duration>,
    /// Chain height when the node was first seen healthy.
    pub first_height: Option<u64>,
    /// Healthy time needed.
    pub commit_after: Duration,
    /// Time to get healthy.
    pub timeout: Duration,
    /// The node's RPC port (for the height).
    pub rpc_port: u16,
}

/// Slot state init keeps in memory.
#[derive(Debug, Clone)]
pub struct SlotCtx {
    /// How this boot started.
    pub boot: SlotBoot,
    /// The bookkeeping.
    pub slots: Slots,
    /// This boot's trial.
    pub trial: Option<Trial>,
    /// An upgrade is being received.
    pub busy: bool,
    /// The node's RPC port.
    pub rpc_port: u16,
    /// When to reboot into the upgraded slot (Unix seconds), if an upgrade scheduled it.
    pub reboot_at: Option<u64>,
}

impl SlotCtx {
    /// The slots for `status`.
    pub fn report(&self) -> Vec<SlotInfo> {
        if self.boot.disk.is_none() {
            return Vec::new();
        }
        self.slots.report(&self.boot.running)
    }
}

/// At boot, after `/data` is mounted: reads the bookkeeping, records this boot, decides
/// whether this is a trial. Returns the context and whether init must reboot at once (the
/// running slot turned out bad).
pub fn on_boot(logs: &LogStore, boot: SlotBoot, cfg: &aergo_os::config::Config) -> (SlotCtx, bool) {
    let version = own_version();
    let text = std::fs::read_to_string(SLOTS_FILE).ok();
    let mut slots = Slots::parse_or_fresh(text.as_deref(), &boot.running, &version);
    let verdict = slots.on_boot(&boot.running, &version);
    let mut trial = None;
    let mut reboot = false;
    match &verdict {
        BootVerdict::Normal => logs.init(
            6,
            &format!("running slot {} (version {version})", boot.running),
        ),
        BootVerdict::Trial => {
            logs.init(
                5,
                &format!(
                    "slot {} (version {version}) is on trial: committed after {} s of a healthy node with new blocks, else back to slot {} after {} s",
                    boot.running,
                    cfg.system.upgrade.commit_after_secs,
                    other(&boot.running),
                    cfg.system.upgrade.trial_timeout_secs
                ),
            );
            trial = Some(Trial {
                started: crate::sys::monotonic(),
                healthy_since: None,
                first_height: None,
                commit_after: Duration::from_secs(cfg.system.upgrade.commit_after_secs),
                timeout: Duration::from_secs(cfg.system.upgrade.trial_timeout_secs),
                rpc_port: rpc_port(cfg),
            });
        }
        BootVerdict::FellBack(line) => {
            logs.init(3, line);
            reboot = slots
                .get(&boot.running)
                .is_some_and(|r| r.state == aergo_os::slots::SlotState::Bad);
        }
    }
    if boot.disk.is_some() {
        if let Err(e) = save(&slots) {
            logs.init(3, &format!("cannot write {SLOTS_FILE}: {e}"));
        }
    }
    // Outside a trial, the running slot is the committed one: make the firmware's choice
    // explicit (its own default would boot whichever ESP it finds first).
    if let (true, false, Some(disk)) = (boot.uefi, reboot || trial.is_some(), &boot.disk) {
        let other_good = slots
            .get(other(&boot.running))
            .is_some_and(|r| r.state == aergo_os::slots::SlotState::Good);
        if let Err(e) = pin_boot_order(disk, &boot.running, other_good) {
            logs.init(3, &format!("cannot set the firmware's boot order: {e}"));
        }
    }
    (
        SlotCtx {
            boot,
            slots,
            trial,
            busy: false,
            rpc_port: rpc_port(cfg),
            reboot_at: None,
        },
        reboot,
    )
}

fn rpc_port(cfg: &aergo_os::config::Config) -> u16 {
    cfg.node
        .rpc_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(aergo_os::paths::RPC_PORT)
}

/// The node's chain height over loopback RPC (`chain_info`), if it answers within 2 s.
fn chain_height(port: u16) -> Option<u64> {
    chain_info(port)?.get("height")?.as_u64()
}

/// The node's `chain_info` over loopback RPC, if it answers within 2 s.
fn chain_info(port: u16) -> Option<serde_json::Value> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"chain_info","params":{}}"#;
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut resp = String::new();
    s.take(1 << 20).read_to_string(&mut resp).ok()?;
    let json = resp.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("result").cloned()
}

/// Called from the supervisor loop: advances the trial. Commits, or fails it and asks for
/// the reboot into the old slot.
pub fn trial_tick(ctx: &Ctx, now: Duration) {
    let node_running = ctx
        .sup
        .lock()
        .report(now)
        .iter()
        .any(|s| s.name == "node" && s.state == aergo_os::control::ServiceState::Running);
    let (port, need_height, started, healthy_since, first, commit_after, timeout) = {
        let mut g = ctx.slots.lock();
        let Some(t) = g.as_mut().and_then(|s| s.trial.as_mut()) else {
            return;
        };
        if node_running {
            t.healthy_since.get_or_insert(now);
        } else {
            t.healthy_since = None;
        }
        (
            t.rpc_port,
            node_running && t.first_height.is_none(),
            t.started,
            t.healthy_since,
            t.first_height,
            t.commit_after,
            t.timeout,
        )
    };
    if need_height {
        let h = chain_height(port);
        if let Some(t) = ctx.slots.lock().as_mut().and_then(|s| s.trial.as_mut()) {
            t.first_height = h;
        }
        return;
    }
    let elapsed = now.saturating_sub(started);
    let healthy_for = healthy_since.map(|h| now.saturating_sub(h));
    if let (Some(hf), Some(h0)) = (healthy_for, first) {
        if hf >= commit_after {
            if let Some(h) = chain_height(port).filter(|h| *h > h0) {
                commit(ctx, h0, h);
                return;
            }
        }
    }
    let never_healthy = healthy_since.is_none() && elapsed >= timeout;
    let too_long = elapsed >= timeout + commit_after + Duration::from_secs(30);
    if never_healthy || too_long {
        let why = if never_healthy {
            format!("the node was not healthy within {} s", timeout.as_secs())
        } else {
            format!(
                "no healthy node with new blocks within {} s",
                elapsed.as_secs()
            )
        };
        let line = {
            let mut g = ctx.slots.lock();
            let Some(s) = g.as_mut() else { return };
            s.trial = None;
            let running = s.boot.running.clone();
            let v = s.slots.fail_trial(&running, &why);
            if let Err(e) = save(&s.slots) {
                ctx.logs.init(3, &format!("cannot write {SLOTS_FILE}: {e}"));
            }
            match v {
                BootVerdict::FellBack(l) => l,
                _ => why,
            }
        };
        ctx.logs.init(2, &line);
        ctx.shutdown(crate::supervisor::Shutdown::Reboot, "failed upgrade trial");
    }
}

fn commit(ctx: &Ctx, h0: u64, h: u64) {
    let mut g = ctx.slots.lock();
    let Some(s) = g.as_mut() else { return };
    s.trial = None;
    let running = s.boot.running.clone();
    let line = s.slots.commit(&running);
    if let Err(e) = save(&s.slots) {
        ctx.logs.init(3, &format!("cannot write {SLOTS_FILE}: {e}"));
    }
    let order = read_var("BootOrder", efi::GLOBAL)
        .map(|v| efi::parse_u16_list(&v))
        .unwrap_or_default();
    let new = efi::boot_order_with(
        &order,
        efi::slot_option(&running),
        efi::slot_option(other(&running)),
    );
    // The other slot's option may not exist (a fresh disk's slot A was booted by the
    // firmware's default): write both.
    if let Some(disk) = s.boot.disk.clone() {
        for slot in [running.as_str(), other(&running)] {
            if let Err(e) = write_boot_option(&disk, slot) {
                ctx.logs.init(
                    3,
                    &format!("cannot write the boot option of slot {slot}: {e}"),
                );
            }
        }
    }
    match write_var("BootOrder", efi::GLOBAL, &efi::u16_list(&new)) {
        Ok(()) => ctx.logs.init(
            5,
            &format!("{line} (chain grew from {h0} to {h} during the trial; BootOrder {new:04X?})"),
        ),
        Err(e) => ctx.logs.init(
            2,
            &format!("{line}, but BootOrder could not be written: {e}"),
        ),
    }
}

/// Puts `running` first in `BootOrder` (then the other slot when it is a good fallback),
/// writing the options that are missing. Writes nothing when it is already so.
fn pin_boot_order(disk: &Path, running: &str, other_good: bool) -> std::io::Result<()> {
    let (mine, theirs) = (efi::slot_option(running), efi::slot_option(other(running)));
    let order = read_var("BootOrder", efi::GLOBAL)
        .map(|v| efi::parse_u16_list(&v))
        .unwrap_or_default();
    let mut want = vec![mine];
    if other_good {
        want.push(theirs);
    }
    want.extend(order.iter().copied().filter(|o| *o != mine && *o != theirs));
    let exists = |o: u16| Path::new(&efi::var_path(&efi::boot_var(o), efi::GLOBAL)).exists();
    if !exists(mine) {
        write_boot_option(disk, running)?;
    }
    if other_good && !exists(theirs) {
        write_boot_option(disk, other(running))?;
    }
    if want != order {
        write_var("BootOrder", efi::GLOBAL, &efi::u16_list(&want))?;
    }
    Ok(())
}

/// Writes the `Boot####` option of `slot` (its ESP's location from the GPT).
fn write_boot_option(disk: &Path, slot: &str) -> std::io::Result<()> {
    let gpt = read_gpt(disk)?;
    let label = esp_label(slot);
    let (i, p) = gpt
        .partitions
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == label)
        .ok_or_else(|| std::io::Error::other(format!("no partition {label}")))?;
    let loc = efi::EspLocation {
        number: u32::try_from(i + 1).unwrap_or(u32::MAX),
        start_lba: p.first_lba,
        sectors: p.last_lba + 1 - p.first_lba,
        guid: p.guid,
    };
    let opt = efi::load_option(&format!("AERGO OS slot {slot}"), loc, efi::UKI_PATH);
    write_var(&efi::boot_var(efi::slot_option(slot)), efi::GLOBAL, &opt)
}

/// How an upgrade did not happen (the message the operator sees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// Refused before anything was written: the disk is as it was.
    Refused(String),
    /// Failed after the inactive slot's partitions were (partly) written: says what was
    /// written and how the slot is now marked (`empty` or `bad`, never `trying`/`good`).
    Failed(String),
}

impl From<String> for UpgradeError {
    fn from(why: String) -> Self {
        UpgradeError::Refused(why)
    }
}

impl From<&str> for UpgradeError {
    fn from(why: &str) -> Self {
        UpgradeError::Refused(why.to_string())
    }
}

impl std::fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpgradeError::Refused(why) => write!(f, "upgrade refused, nothing installed: {why}"),
            UpgradeError::Failed(why) => write!(f, "upgrade failed: {why}"),
        }
    }
}

/// Free space `/data` must have before an upgrade writes anything: `slots.json` is saved
/// twice around the slot write (temporary copy, then rename), a few KiB each.
pub const BOOKKEEPING_ROOM: u64 = 1 << 20;

/// Available memory in bytes (`MemAvailable`).
fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| kib.saturating_mul(1024))
        .unwrap_or(0)
}

/// Writes `bytes` at the start of `dev`, reads them back and compares, fsyncs.
fn write_partition(dev: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    f.seek(SeekFrom::Start(0))?;
    let mut back = vec![0u8; bytes.len()];
    f.read_exact(&mut back)?;
    if back != bytes {
        return Err(std::io::Error::other(format!(
            "{} reads back different bytes",
            dev.display()
        )));
    }
    Ok(())
}

/// The `upgrade` control op: reads `size` bundle bytes from `r` and installs them into the
/// inactive slot (see the module docs). `reboot_at` (Unix seconds) schedules the reboot into
/// it; any earlier schedule is dropped as soon as the slot is rewritten. Returns the
/// acknowledgement line, or why not.
pub fn install(
    ctx: &Ctx,
    r: &mut dyn Read,
    size: u64,
    allow_downgrade: bool,
    reboot_at: Option<u64>,
) -> Result<String, UpgradeError> {
    let t0 = std::time::Instant::now();
    let (boot, running_version) = {
        let mut g = ctx.slots.lock();
        let Some(s) = g.as_mut() else {
            return Err("slots are not set up yet (init is still booting)".into());
        };
        if s.busy {
            return Err("another upgrade is in progress".into());
        }
        if s.trial.is_some() {
            return Err(format!(
                "slot {} is on trial: wait for its commit (aergo os status) before the next upgrade",
                s.boot.running
            )
            .into());
        }
        s.busy = true;
        let v = s
            .slots
            .get(&s.boot.running)
            .map(|r| r.version.clone())
            .unwrap_or_default();
        (s.boot.clone(), v)
    };
    let r2 = install_inner(ctx, r, size, allow_downgrade, &boot, &running_version, t0);
    if let Some(s) = ctx.slots.lock().as_mut() {
        s.busy = false;
        if let (Ok(_), Some(at)) = (&r2, reboot_at) {
            s.reboot_at = Some(at);
        }
    }
    r2.map(|line| match reboot_at {
        Some(at) => {
            let msg = format!(
                "{line}; reboot scheduled at {} (aergo os reboot --cancel cancels it)",
                aergo_os::schedule::format_utc(at)
            );
            ctx.logs.init(5, &format!("upgrade: {msg}"));
            msg
        }
        None => line,
    })
}

/// Everything checked before a byte is written: the bundle's signature (`key`), format and
/// architecture (`arch`), its version against `running_version` (older: refused unless
/// `allow_downgrade`), that each part fits its partition (`esp_room`, `sys_room`) and that
/// the payload fits in `mem_avail` bytes of memory; then the payload is read and every hash
/// checked. Returns the verified manifest and parts.
#[allow(clippy::too_many_arguments)]
pub fn vet(
    r: &mut dyn Read,
    key: &PublicKey,
    arch: &str,
    running_version: &str,
    allow_downgrade: bool,
    target: &str,
    (esp_room, sys_room): (u64, u64),
    mem_avail: u64,
) -> Result<(aergo_os::bundle::Manifest, Vec<VerifiedPart>), String> {
    let reader = BundleReader::open(r, key, arch).map_err(|e| e.to_string())?;
    let m = reader.manifest().clone();
    if compare_versions(&m.version, running_version) == std::cmp::Ordering::Less && !allow_downgrade
    {
        return Err(format!(
            "{} is older than the running {running_version}: a downgrade needs --allow-downgrade",
            m.version
        ));
    }
    for p in &m.parts {
        let room = if p.name == PART_ESP {
            esp_room
        } else {
            sys_room
        };
        if p.size > room {
            return Err(format!(
                "part `{}` ({} bytes) does not fit slot {target}'s partition ({room} bytes)",
                p.name, p.size
            ));
        }
    }
    let need = m.payload_bytes().saturating_add(64 << 20);
    if need > mem_avail {
        return Err(format!(
            "not enough memory to verify the bundle before writing it: {need} bytes needed, {mem_avail} available"
        ));
    }
    reader.read_all().map_err(|e| e.to_string())
}

fn install_inner(
    ctx: &Ctx,
    r: &mut dyn Read,
    size: u64,
    allow_downgrade: bool,
    boot: &SlotBoot,
    running_version: &str,
    t0: std::time::Instant,
) -> Result<String, UpgradeError> {
    let Some(disk) = boot.disk.clone() else {
        return Err("this disk has no A/B system slots (reflash it with a current image)".into());
    };
    if !boot.uefi {
        return Err(
            "not booted through UEFI (direct kernel boot?): a new slot cannot be booted once, so upgrades are off"
                .into(),
        );
    }
    if size > MAX_BUNDLE {
        return Err(format!("bundle of {size} bytes is larger than {MAX_BUNDLE}").into());
    }
    let key = PublicKey::load(Path::new(RELEASE_KEY)).map_err(|e| {
        format!("this image has no usable release key ({RELEASE_KEY}: {e}); it was built without --release-key")
    })?;
    let target = other(&boot.running).to_string();
    let gpt = read_gpt(&disk).map_err(|e| format!("reading the partition table: {e}"))?;
    let part_size = |label: &str| gpt.find(label).map(|p| p.size_bytes());
    let (Some(esp_room), Some(sys_room)) = (
        part_size(&esp_label(&target)),
        part_size(&system_label(&target)),
    ) else {
        return Err(format!("slot {target} has no partitions on this disk").into());
    };
    let (m, parts) = vet(
        &mut r.take(size),
        &key,
        machine_arch(),
        running_version,
        allow_downgrade,
        &target,
        (esp_room, sys_room),
        mem_available(),
    )?;
    let verified = t0.elapsed();
    ctx.logs.init(
        5,
        &format!(
            "upgrade: bundle {} verified (signature {}, {} bytes) in {} ms; writing slot {target}",
            m.version,
            key.fingerprint(),
            size,
            verified.as_millis()
        ),
    );
    write_slot(
        &ctx.slots,
        Path::new(SLOTS_FILE),
        &target,
        running_version,
        &m,
        &parts,
        &|label| data::find_partition(Path::new("/sys/class/block"), label).map(|p| p.dev()),
    )?;
    let written = t0.elapsed();
    // Arm the one trial boot. A failure here leaves a complete but unarmed slot: marked bad
    // (not `trying`: nothing will boot it), and said so.
    let armed = write_boot_option(&disk, &target)
        .map_err(|e| format!("writing the boot option: {e}"))
        .and_then(|()| {
            write_var(
                "BootNext",
                efi::GLOBAL,
                &efi::u16_list(&[efi::slot_option(&target)]),
            )
            .map_err(|e| format!("writing BootNext: {e}"))
        });
    if let Err(why) = armed {
        let mut g = ctx.slots.lock();
        if let Some(s) = g.as_mut() {
            s.slots.arm_failed(&target, &m.version, &why);
            if let Err(e) = save(&s.slots) {
                ctx.logs.init(3, &format!("cannot write {SLOTS_FILE}: {e}"));
            }
        }
        let msg = format!(
            "slot {target} was written with {} but could not be armed for its trial boot ({why}); slot {target} is marked bad and will not be booted; slot {} keeps running",
            m.version, boot.running
        );
        ctx.logs.init(3, &format!("upgrade: {msg}"));
        return Err(UpgradeError::Failed(msg));
    }
    let line = format!(
        "installed {} in slot {target} (verified in {} ms, written in {} ms); the next boot tries it once",
        m.version,
        verified.as_millis(),
        written.saturating_sub(verified).as_millis()
    );
    ctx.logs.init(5, &format!("upgrade: {line}"));
    Ok(line)
}

/// Writes the verified `parts` into slot `target`'s partitions (`dev_of` maps a GPT label
/// to its device), keeping the bookkeeping at `slots_file` honest at every step:
/// 1. `/data` must have [`BOOKKEEPING_ROOM`] free and the slot must be recorded as being
///    written (`empty`) in `slots_file` — otherwise refused, nothing written, and the
///    in-memory bookkeeping is left as it was;
/// 2. the system partition, then the ESP, each read back and fsynced — a failure leaves the
///    slot `empty` with the error as the last upgrade's outcome;
/// 3. the slot recorded as `trying` — if that save fails the slot stays `empty` (in memory
///    and in the file, which still says so from step 1), and the error says the partitions
///    were overwritten.
///
/// A reboot scheduled by an earlier upgrade is dropped at step 1: the slot it was for is
/// being overwritten.
pub fn write_slot(
    slots: &parking_lot::Mutex<Option<SlotCtx>>,
    slots_file: &Path,
    target: &str,
    running_version: &str,
    m: &aergo_os::bundle::Manifest,
    parts: &[VerifiedPart],
    dev_of: &dyn Fn(&str) -> Option<std::path::PathBuf>,
) -> Result<(), UpgradeError> {
    let dir = slots_file.parent().unwrap_or(Path::new("/"));
    let free = dir
        .to_str()
        .and_then(crate::sys::statvfs)
        .map(|(_, free)| free)
        .ok_or_else(|| format!("cannot read the free space of {}", dir.display()))?;
    if free < BOOKKEEPING_ROOM {
        return Err(format!(
            "{} is full ({free} bytes free, {BOOKKEEPING_ROOM} needed to record the upgrade): free some space first",
            dir.display()
        )
        .into());
    }
    // Resolve every device before the first write.
    let mut order: Vec<&VerifiedPart> = parts.iter().collect();
    // System partition first, the ESP (what the firmware boots) last.
    order.sort_by_key(|(p, _)| p.name == PART_ESP);
    let mut devs = Vec::new();
    for (p, bytes) in order {
        let label = if p.name == PART_ESP {
            esp_label(target)
        } else {
            system_label(target)
        };
        let dev = dev_of(&label).ok_or_else(|| format!("partition {label} not found"))?;
        devs.push((label, dev, bytes));
    }
    // The slot is not bootable while it is being written: say so, durably, first.
    {
        let mut g = slots.lock();
        let s = g
            .as_mut()
            .ok_or("slots are not set up yet (init is still booting)")?;
        let before = s.slots.clone();
        s.slots.writing(target, &m.version);
        if let Err(e) = save_to(slots_file, &s.slots) {
            s.slots = before;
            return Err(
                format!("cannot record the upgrade in {}: {e}", slots_file.display()).into(),
            );
        }
        s.reboot_at = None;
    }
    for (label, dev, bytes) in devs {
        if let Err(e) = write_partition(&dev, bytes) {
            let why = format!("writing {label}: {e}");
            let mut g = slots.lock();
            if let Some(s) = g.as_mut() {
                s.slots.write_failed(target, &m.version, &why);
                let _ = save_to(slots_file, &s.slots);
            }
            return Err(UpgradeError::Failed(format!(
                "{why}; slot {target}'s partitions are partly overwritten and it is marked empty; the running slot is untouched"
            )));
        }
    }
    crate::sys::sync();
    let mut g = slots.lock();
    let s = g
        .as_mut()
        .ok_or("slots are not set up yet (init is still booting)")?;
    let before = s.slots.clone();
    s.slots.installed(target, &m.version, running_version);
    if let Err(e) = save_to(slots_file, &s.slots) {
        // The file still says `empty` (step 1); so does memory.
        s.slots = before;
        s.slots.write_failed(
            target,
            &m.version,
            &format!(
                "slot {target} was written but {} could not record it ({e})",
                slots_file.display()
            ),
        );
        return Err(UpgradeError::Failed(format!(
            "slot {target} was written with {} but {} could not record it ({e}); slot {target} is marked empty and will not be booted; the running slot is untouched",
            m.version,
            slots_file.display()
        )));
    }
    Ok(())
}

/// When the reboot an upgrade scheduled is due at `now` (Unix seconds): clears it and returns
/// its time. Not while another upgrade is being written (that one drops the schedule).
pub fn take_due_reboot(s: &mut SlotCtx, now: u64) -> Option<u64> {
    match s.reboot_at {
        Some(at) if now >= at && !s.busy => s.reboot_at.take(),
        _ => None,
    }
}

/// Called every second: reboots when a scheduled reboot is due.
pub fn reboot_tick(ctx: &Ctx, now: u64) {
    let due = ctx
        .slots
        .lock()
        .as_mut()
        .and_then(|s| take_due_reboot(s, now));
    if let Some(at) = due {
        ctx.logs.init(
            5,
            &format!(
                "the reboot scheduled at {} is due",
                aergo_os::schedule::format_utc(at)
            ),
        );
        ctx.shutdown(
            crate::supervisor::Shutdown::Reboot,
            "scheduled reboot after an upgrade",
        );
    }
}

/// Wall-clock Unix seconds (0 when the clock reads before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Files for `aergo os support-bundle` (`support_info`): the config with secrets redacted,
/// versions, slot bookkeeping, memory, mounts and disk figures, the chain's tip.
pub fn support_files(ctx: &Ctx) -> Vec<aergo_os::control::SupportFile> {
    let file = |name: &str, text: String| aergo_os::control::SupportFile {
        name: name.to_string(),
        text,
    };
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| format!("({p}: {e})\n"));
    let mut files = Vec::new();
    let config = std::fs::read_to_string(aergo_os::paths::APPLIANCE_CONFIG)
        .map(|t| aergo_os::config::Config::redacted(&t))
        .unwrap_or_else(|e| format!("# {}: {e}\n", aergo_os::paths::APPLIANCE_CONFIG));
    files.push(file("config/aergo.toml", config));
    let (slots, running) = match ctx.slots.lock().as_ref() {
        Some(s) => (s.slots.to_json(), s.boot.running.clone()),
        None => ("{}".into(), "?".into()),
    };
    files.push(file(
        "versions.txt",
        format!(
            "os {}\ninit {}\nkernel {}\nrunning slot {running}\nbuild {}\nsystem build {}\n",
            own_version(),
            env!("CARGO_PKG_VERSION"),
            crate::sys::kernel_release(),
            read("/etc/aergo/build-id").trim(),
            read("/usr/share/aergo/build-id").trim(),
        ),
    ));
    files.push(file("slots.json", slots));
    files.push(file("proc/meminfo", read("/proc/meminfo")));
    files.push(file("proc/mounts", read("/proc/mounts")));
    files.push(file("proc/cmdline", read("/proc/cmdline")));
    files.push(file("proc/loadavg", read("/proc/loadavg")));
    let mut df = String::new();
    for m in ["/data", "/usr", "/run", "/tmp"] {
        if let Some((total, free)) = crate::sys::statvfs(m) {
            df.push_str(&format!("{m} total {total} free {free}\n"));
        }
    }
    files.push(file("df.txt", df));
    let port = ctx
        .slots
        .lock()
        .as_ref()
        .map(|s| s.rpc_port)
        .unwrap_or(aergo_os::paths::RPC_PORT);
    files.push(file(
        "chain_tip.json",
        match chain_info(port) {
            Some(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            None => "{\"error\": \"the node did not answer chain_info\"}".into(),
        },
    ));
    files
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use aergo_os::bundle::{write_bundle, SecretKey, PART_SYSTEM};
    use aergo_os::slots::SlotState;
    use parking_lot::Mutex;
    use std::path::PathBuf;

    /// A signed bundle of `version` with a `sys_len`-byte system part and a 4 KiB ESP.
    fn bundle(key: &SecretKey, version: &str, sys_len: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (esp, sys) = (dir.path().join("esp"), dir.path().join("sys"));
        std::fs::write(&esp, vec![0xE5; 4096]).unwrap();
        std::fs::write(
            &sys,
            (0..sys_len)
                .map(|i| u8::try_from(i % 251).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let mut out = Vec::new();
        write_bundle(
            &mut out,
            key,
            version,
            machine_arch(),
            &[(PART_ESP, esp.as_path()), (PART_SYSTEM, sys.as_path())],
        )
        .unwrap();
        out
    }

    fn vet_bytes(
        bytes: &[u8],
        key: &PublicKey,
        running: &str,
        allow_downgrade: bool,
    ) -> Result<(aergo_os::bundle::Manifest, Vec<VerifiedPart>), String> {
        vet(
            &mut &bytes[..],
            key,
            machine_arch(),
            running,
            allow_downgrade,
            "B",
            (1 << 30, 1 << 30),
            1 << 30,
        )
    }

    #[test]
    fn a_downgrade_is_refused_without_the_flag_and_accepted_with_it() {
        let key = SecretKey::generate().unwrap();
        let older = bundle(&key, "1.1.9", 8192);
        let e = vet_bytes(&older, &key.public(), "1.2.0", false).unwrap_err();
        assert_eq!(
            e,
            "1.1.9 is older than the running 1.2.0: a downgrade needs --allow-downgrade"
        );
        let (m, parts) = vet_bytes(&older, &key.public(), "1.2.0", true).unwrap();
        assert_eq!(m.version, "1.1.9");
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|(p, b)| p.size == b.len() as u64));
        // Numeric, not lexical: 1.10.0 is newer than 1.9.0; the same version reinstalls.
        let newer = bundle(&key, "1.10.0", 4096);
        assert!(vet_bytes(&newer, &key.public(), "1.9.0", false).is_ok());
        assert!(vet_bytes(&newer, &key.public(), "1.10.0", false).is_ok());
        assert!(vet_bytes(&newer, &key.public(), "1.10.1", false)
            .unwrap_err()
            .contains("--allow-downgrade"));
        // The flag does not bypass the signature.
        let other = SecretKey::generate().unwrap();
        let e = vet_bytes(&older, &other.public(), "1.2.0", true).unwrap_err();
        assert!(e.contains("signature"), "{e}");
        // Nor the partition sizes.
        let e = vet(
            &mut &older[..],
            &key.public(),
            machine_arch(),
            "1.0.0",
            false,
            "B",
            (1 << 20, 4096),
            1 << 30,
        )
        .unwrap_err();
        assert!(e.contains("does not fit slot B's partition"), "{e}");
    }

    /// A tmpfs of `size` mounted on a fresh folder (the stand-in for `/data`), unmounted
    /// on drop. `None` where mounting is not permitted (not root); under `CI=true` that
    /// fails the test instead.
    struct Tmpfs {
        dir: tempfile::TempDir,
    }

    impl Tmpfs {
        fn mount(size: &str) -> Option<Tmpfs> {
            let dir = tempfile::tempdir().unwrap();
            match crate::sys::mount(
                "tmpfs",
                &dir.path().display().to_string(),
                "tmpfs",
                0,
                &format!("size={size}"),
            ) {
                Ok(()) => Some(Tmpfs { dir }),
                Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                    eprintln!("SKIPPED: cannot mount a tmpfs here ({e}); run as root");
                    None
                }
                Err(e) => panic!("cannot mount a tmpfs (CI=true needs root): {e}"),
            }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        fn remount_ro(&self) {
            crate::sys::mount(
                "tmpfs",
                &self.path().display().to_string(),
                "tmpfs",
                libc::MS_REMOUNT | libc::MS_RDONLY,
                "",
            )
            .unwrap();
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let p = std::ffi::CString::new(self.path().display().to_string()).unwrap();
            // SAFETY: a valid C string; MNT_DETACH needs nothing else.
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
    }

    fn slot_ctx(slots: Slots) -> Mutex<Option<SlotCtx>> {
        Mutex::new(Some(SlotCtx {
            boot: SlotBoot {
                running: "A".into(),
                uefi: true,
                disk: None,
            },
            slots,
            trial: None,
            busy: true,
            rpc_port: 0,
            reboot_at: Some(1_800_000_000),
        }))
    }

    /// Stand-ins for slot B's two partitions, filled with 0xAA.
    fn partitions(dir: &Path, len: usize) -> (PathBuf, PathBuf) {
        let (esp, sys) = (dir.join("esp-b"), dir.join("system-b"));
        std::fs::write(&esp, vec![0xAA; len]).unwrap();
        std::fs::write(&sys, vec![0xAA; len]).unwrap();
        (esp, sys)
    }

    fn devs(esp: PathBuf, sys: PathBuf) -> impl Fn(&str) -> Option<PathBuf> {
        move |label: &str| match label {
            "AERGO-ESP-B" => Some(esp.clone()),
            "AERGO-SYSTEM-B" => Some(sys.clone()),
            _ => None,
        }
    }

    fn untouched(p: &Path) -> bool {
        std::fs::read(p).unwrap().iter().all(|b| *b == 0xAA)
    }

    #[test]
    fn a_full_or_read_only_data_refuses_before_any_partition_is_written() {
        let key = SecretKey::generate().unwrap();
        let (m, parts) =
            vet_bytes(&bundle(&key, "2.0.0", 8192), &key.public(), "1.0.0", false).unwrap();
        let disk = tempfile::tempdir().unwrap();
        let (esp, sys) = partitions(disk.path(), 16384);

        // Full: 512 KiB left of 2 MiB.
        let Some(data) = Tmpfs::mount("2m") else {
            return;
        };
        let file = data.path().join("slots.json");
        let fresh = Slots::fresh("A", "1.0.0");
        save_to(&file, &fresh).unwrap();
        let before = std::fs::read_to_string(&file).unwrap();
        std::fs::write(data.path().join("filler"), vec![1u8; 1536 << 10]).unwrap();
        let slots = slot_ctx(fresh.clone());
        let e = write_slot(
            &slots,
            &file,
            "B",
            "1.0.0",
            &m,
            &parts,
            &devs(esp.clone(), sys.clone()),
        )
        .unwrap_err();
        let UpgradeError::Refused(why) = &e else {
            panic!("{e:?}")
        };
        assert!(
            why.contains("is full") && why.contains("free some space"),
            "{why}"
        );
        assert!(
            e.to_string()
                .starts_with("upgrade refused, nothing installed"),
            "{e}"
        );
        assert!(untouched(&esp) && untouched(&sys));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
        let g = slots.lock();
        let s = g.as_ref().unwrap();
        assert_eq!(s.slots, fresh);
        assert_eq!(
            s.reboot_at,
            Some(1_800_000_000),
            "a refusal keeps the schedule"
        );
        drop(g);
        drop(data);

        // Read-only (room enough, but slots.json cannot be saved).
        let Some(data) = Tmpfs::mount("4m") else {
            return;
        };
        let file = data.path().join("slots.json");
        save_to(&file, &fresh).unwrap();
        data.remount_ro();
        let slots = slot_ctx(fresh.clone());
        let e = write_slot(
            &slots,
            &file,
            "B",
            "1.0.0",
            &m,
            &parts,
            &devs(esp.clone(), sys.clone()),
        )
        .unwrap_err();
        let UpgradeError::Refused(why) = &e else {
            panic!("{e:?}")
        };
        assert!(
            why.contains("cannot record the upgrade in") && why.contains("Read-only"),
            "{why}"
        );
        assert!(untouched(&esp) && untouched(&sys));
        assert_eq!(slots.lock().as_ref().unwrap().slots, fresh);
    }

    #[test]
    fn data_filling_up_during_the_write_is_an_honest_failure_with_the_slot_empty() {
        let key = SecretKey::generate().unwrap();
        let Some(data) = Tmpfs::mount("2m") else {
            return;
        };
        let file = data.path().join("slots.json");
        let fresh = Slots::fresh("A", "1.0.0");
        save_to(&file, &fresh).unwrap();
        // The system partition's stand-in lives on the same small filesystem and its bytes
        // take every page left, so the slot writes succeed and the save after them cannot.
        let (_, free) = crate::sys::statvfs(&data.path().display().to_string()).unwrap();
        let free = usize::try_from(free).unwrap();
        assert!(free as u64 >= BOOKKEEPING_ROOM, "{free}");
        let (m, parts) =
            vet_bytes(&bundle(&key, "2.0.0", free), &key.public(), "1.0.0", false).unwrap();
        let disk = tempfile::tempdir().unwrap();
        let (esp, _) = partitions(disk.path(), 4096);
        let sys = data.path().join("system-b");
        std::fs::write(&sys, b"").unwrap();
        let slots = slot_ctx(fresh.clone());
        let e = write_slot(
            &slots,
            &file,
            "B",
            "1.0.0",
            &m,
            &parts,
            &devs(esp.clone(), sys.clone()),
        )
        .unwrap_err();
        let UpgradeError::Failed(why) = &e else {
            panic!("{e:?}")
        };
        assert!(
            why.contains("slot B was written with 2.0.0")
                && why.contains("could not record it")
                && why.contains("marked empty"),
            "{why}"
        );
        assert!(e.to_string().starts_with("upgrade failed: "), "{e}");
        // The partitions were written (the error says so) …
        assert_eq!(std::fs::read(&esp).unwrap(), parts[0].1);
        assert_eq!(std::fs::read(&sys).unwrap().len(), free);
        // … and status would show B empty, never trying; the file says the same.
        let g = slots.lock();
        let s = g.as_ref().unwrap();
        assert_eq!(
            s.slots.report("A")[1].state,
            SlotState::Empty,
            "{:?}",
            s.slots
        );
        assert_eq!(s.slots.trying, None);
        assert!(s
            .slots
            .last_upgrade
            .as_deref()
            .unwrap()
            .contains("could not record it"));
        assert_eq!(s.reboot_at, None, "the slot it was for was overwritten");
        let on_disk =
            Slots::parse_or_fresh(Some(&std::fs::read_to_string(&file).unwrap()), "A", "");
        assert_eq!(on_disk.get("B").unwrap().state, SlotState::Empty);
        assert_eq!(on_disk.trying, None);
        assert!(
            !file.with_extension("json.tmp").exists(),
            "no partial temporary file left"
        );
    }

    #[test]
    fn a_write_error_leaves_the_slot_empty_and_a_good_write_arms_it() {
        let key = SecretKey::generate().unwrap();
        let (m, parts) =
            vet_bytes(&bundle(&key, "2.0.0", 8192), &key.public(), "1.0.0", false).unwrap();
        let data = tempfile::tempdir().unwrap();
        let file = data.path().join("slots.json");
        let disk = tempfile::tempdir().unwrap();
        let (esp, _) = partitions(disk.path(), 16384);
        // An unwritable system partition: the ESP (written last) stays untouched.
        let slots = slot_ctx(Slots::fresh("A", "1.0.0"));
        let e = write_slot(
            &slots,
            &file,
            "B",
            "1.0.0",
            &m,
            &parts,
            &devs(esp.clone(), disk.path().join("gone/x")),
        )
        .unwrap_err();
        assert!(
            matches!(&e, UpgradeError::Failed(w) if w.contains("writing AERGO-SYSTEM-B")),
            "{e:?}"
        );
        assert!(
            untouched(&esp),
            "the ESP is written after the system partition"
        );
        {
            let g = slots.lock();
            let s = g.as_ref().unwrap();
            assert_eq!(s.slots.report("A")[1].state, SlotState::Empty);
            assert!(s
                .slots
                .last_upgrade
                .as_deref()
                .unwrap()
                .contains("upgrade to 2.0.0 failed: writing AERGO-SYSTEM-B"));
        }
        let on_disk =
            Slots::parse_or_fresh(Some(&std::fs::read_to_string(&file).unwrap()), "A", "");
        assert_eq!(on_disk.get("B").unwrap().state, SlotState::Empty);

        let (esp, sys) = partitions(disk.path(), 16384);
        write_slot(
            &slots,
            &file,
            "B",
            "1.0.0",
            &m,
            &parts,
            &devs(esp.clone(), sys.clone()),
        )
        .unwrap();
        let esp_bytes = std::fs::read(&esp).unwrap();
        assert_eq!(&esp_bytes[..4096], &parts[0].1[..]);
        assert!(esp_bytes[4096..].iter().all(|b| *b == 0xAA));
        assert_eq!(&std::fs::read(&sys).unwrap()[..8192], &parts[1].1[..]);
        let on_disk =
            Slots::parse_or_fresh(Some(&std::fs::read_to_string(&file).unwrap()), "A", "");
        assert_eq!(on_disk.get("B").unwrap().state, SlotState::Trying);
        assert_eq!(on_disk.trying.as_deref(), Some("B"));
    }

    #[test]
    fn a_scheduled_reboot_is_due_at_its_time_and_not_during_an_upgrade() {
        let slots = slot_ctx(Slots::fresh("A", "1.0.0"));
        let mut g = slots.lock();
        let s = g.as_mut().unwrap();
        s.busy = false;
        let at = 1_800_000_000;
        assert_eq!(take_due_reboot(s, at - 1), None);
        assert_eq!(s.reboot_at, Some(at));
        s.busy = true;
        assert_eq!(
            take_due_reboot(s, at + 5),
            None,
            "not while a slot is being written"
        );
        s.busy = false;
        assert_eq!(take_due_reboot(s, at + 5), Some(at));
        assert_eq!(s.reboot_at, None, "taken once");
        assert_eq!(take_due_reboot(s, at + 6), None);
    }
}
