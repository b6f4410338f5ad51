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
use aergo_os::bundle::{compare_versions, machine_arch, BundleReader, PublicKey, PART_ESP};
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
    let path = Path::new(SLOTS_FILE);
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(slots.to_json().as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
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

/// Why an upgrade was refused (the message the operator sees).
pub type Refusal = String;

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
/// inactive slot (see the module docs). Returns the acknowledgement line or the refusal.
pub fn install(
    ctx: &Ctx,
    r: &mut dyn Read,
    size: u64,
    allow_downgrade: bool,
) -> Result<String, Refusal> {
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
            ));
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
    }
    r2
}

fn install_inner(
    ctx: &Ctx,
    r: &mut dyn Read,
    size: u64,
    allow_downgrade: bool,
    boot: &SlotBoot,
    running_version: &str,
    t0: std::time::Instant,
) -> Result<String, Refusal> {
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
        return Err(format!(
            "bundle of {size} bytes is larger than {MAX_BUNDLE}"
        ));
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
        return Err(format!("slot {target} has no partitions on this disk"));
    };
    let reader =
        BundleReader::open(r.take(size), &key, machine_arch()).map_err(|e| e.to_string())?;
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
    let avail = mem_available();
    if need > avail {
        return Err(format!(
            "not enough memory to verify the bundle before writing it: {need} bytes needed, {avail} available"
        ));
    }
    let (m, parts) = reader.read_all().map_err(|e| e.to_string())?;
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
    // The slot is not bootable while it is being written: say so first.
    {
        let mut g = ctx.slots.lock();
        if let Some(s) = g.as_mut() {
            s.slots.writing(&target, &m.version);
            let _ = save(&s.slots);
        }
    }
    // System partition first, the ESP (what the firmware boots) last.
    let mut order: Vec<&(aergo_os::bundle::Part, Vec<u8>)> = parts.iter().collect();
    order.sort_by_key(|(p, _)| p.name == PART_ESP);
    for (p, bytes) in order {
        let label = if p.name == PART_ESP {
            esp_label(&target)
        } else {
            system_label(&target)
        };
        let dev = data::find_partition(Path::new("/sys/class/block"), &label)
            .ok_or_else(|| format!("partition {label} not found"))?
            .dev();
        write_partition(&dev, bytes).map_err(|e| format!("writing {label}: {e}"))?;
    }
    crate::sys::sync();
    let written = t0.elapsed();
    {
        let mut g = ctx.slots.lock();
        if let Some(s) = g.as_mut() {
            s.slots.installed(&target, &m.version, running_version);
            save(&s.slots).map_err(|e| format!("writing {SLOTS_FILE}: {e}"))?;
        }
    }
    write_boot_option(&disk, &target).map_err(|e| format!("writing the boot option: {e}"))?;
    write_var(
        "BootNext",
        efi::GLOBAL,
        &efi::u16_list(&[efi::slot_option(&target)]),
    )
    .map_err(|e| format!("writing BootNext: {e}"))?;
    let line = format!(
        "installed {} in slot {target} (verified in {} ms, written in {} ms); the next boot tries it once",
        m.version,
        verified.as_millis(),
        written.saturating_sub(verified).as_millis()
    );
    ctx.logs.init(5, &format!("upgrade: {line}"));
    Ok(line)
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
