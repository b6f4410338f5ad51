//! aergo-init: PID 1 and service supervisor of AERGO OS.
//!
//! Boot: pseudo filesystems → kernel modules on a background thread (disk drivers and
//! filesystems first, then NICs and the rest, matched by modalias) → system partition
//! (squashfs at `/usr`, as soon as its disk and filesystem are there) → config → data
//! partition (grow, mount) → entropy, tokens → control sockets → network (DHCP/static over
//! netlink, once the modules are loaded) and SNTP in the background → services under the
//! supervisor (watchdog and power button once their drivers are there). Shutdown
//! (SIGTERM/power button → power off, SIGINT/Ctrl-Alt-Del → reboot, or
//! a control request): services stop in reverse order, logs flush, `/data` is unmounted,
//! then `reboot(2)`. Every subsystem runs under `catch_unwind`; init never exits.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod ctl;
mod data;
mod dhcp;
mod logs;
mod net;
mod node_rpc;
mod services;
mod sntp;
mod supervisor;
mod sys;
mod upgrade;

use aergo_os::config::Config;
use aergo_os::control::{ExitInfo, CONTROL_TCP_PORT};
use aergo_os::paths;
use ctl::Ctx;
use logs::LogStore;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use supervisor::{Backoff, Shutdown, Supervisor};

/// The config baked into the initramfs by aergo-image.
const BAKED_CONFIG: &str = "/etc/aergo/aergo.toml";
/// The image build this initramfs belongs to (written by aergo-image).
const BUILD_ID: &str = "/etc/aergo/build-id";
/// The image build the mounted system partition belongs to.
const SYSTEM_BUILD_ID: &str = "/usr/share/aergo/build-id";
/// Longest a shutdown may take before everything is killed.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    if std::process::id() != 1 {
        eprintln!("aergo-init is the AERGO OS appliance's PID 1; it does nothing elsewhere.");
        std::process::exit(2);
    }
    let logs = Arc::new(LogStore::new(logs::RING_LINES, logs::ROTATE_BYTES));
    let l2 = logs.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boot(l2)));
    // boot() only returns if something unrecoverable happened; PID 1 must not exit.
    let why = match r {
        Ok(()) => "init's main loop ended".to_string(),
        Err(_) => "init's main loop panicked".to_string(),
    };
    logs.init(0, &format!("{why}; halting here (power cycle the machine)"));
    sys::sync();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn write_file(path: &str, text: &str) {
    let _ = std::fs::write(path, text);
}

fn spawn_named(ctx: &Arc<Ctx>, name: &str, f: impl FnOnce(Arc<Ctx>) + Send + 'static) {
    let c = ctx.clone();
    let n = name.to_string();
    let r = std::thread::Builder::new().name(n.clone()).spawn(move || {
        let c2 = c.clone();
        let _ = c.guard(&n, move || f(c2));
    });
    if let Err(e) = r {
        ctx.logs
            .init(3, &format!("cannot start thread {name}: {e}"));
    }
}

/// Which console the dashboard takes: `aergo.console=ttyS0|tty1|none|auto`.
fn pick_console(cmdline: &str) -> Option<String> {
    let choice = sys::cmdline_value(cmdline, "aergo.console").unwrap_or_else(|| "auto".into());
    match choice.as_str() {
        "none" | "off" => None,
        "auto" | "" => {
            // A framebuffer means a screen is attached: use the VT; else the serial console.
            if Path::new("/sys/class/graphics/fb0").exists() {
                Some("/dev/tty1".into())
            } else {
                Some("/dev/ttyS0".into())
            }
        }
        other => Some(format!("/dev/{}", other.trim_start_matches("/dev/"))),
    }
}

struct DataSetup {
    mounted: bool,
}

fn setup_data(logs: &LogStore, cfg: &Config) -> DataSetup {
    let label = paths::DATA_LABEL;
    let Some(part) = data::wait_partition(label, Duration::from_secs(15)) else {
        logs.init(
            3,
            &format!("no partition labelled {label}: running on a RAM disk, nothing will persist"),
        );
        let _ = sys::mount("tmpfs", paths::DATA_MOUNT, "tmpfs", 0, "mode=0755");
        return DataSetup { mounted: false };
    };
    logs.init(
        6,
        &format!(
            "data partition {label} is /dev/{} on /dev/{}",
            part.name, part.disk
        ),
    );
    match data::grow_partition(&part, label) {
        Ok(Some(size)) => logs.init(5, &format!("grew partition {label} to {} MiB", size >> 20)),
        Ok(None) => {}
        Err(e) => logs.init(4, &format!("cannot grow partition {label}: {e}")),
    }
    // The kernel re-created the partition device if the table changed: wait for it again.
    let part = data::wait_partition(label, Duration::from_secs(5)).unwrap_or(part);
    let dev = part.dev().display().to_string();
    let (sb, blank, dev_size) = match std::fs::File::open(&dev) {
        Ok(mut f) => (
            data::read_super(&mut f, 0).ok().flatten(),
            data::is_blank(&mut f).unwrap_or(false),
            data::device_size(&f).unwrap_or(0),
        ),
        Err(e) => {
            logs.init(3, &format!("cannot open {dev}: {e}"));
            (None, false, 0)
        }
    };
    if sb.is_none() {
        if blank && cfg.system.format_blank_data {
            logs.init(
                5,
                &format!("{dev} is blank and system.format_blank_data is set: formatting ext4"),
            );
            let ok = std::process::Command::new("/sbin/mke2fs")
                .args([
                    "-q", "-F", "-t", "ext4", "-b", "4096", "-O", "64bit", "-L", label,
                ])
                .arg(&dev)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                logs.init(3, "formatting failed");
            }
        } else {
            let why = if blank {
                "it is blank and system.format_blank_data is false"
            } else {
                "it holds something that is not ext4; it is never formatted"
            };
            logs.init(
                3,
                &format!("{dev} has no ext4 filesystem and {why}: running on a RAM disk"),
            );
            let _ = sys::mount("tmpfs", paths::DATA_MOUNT, "tmpfs", 0, "mode=0755");
            return DataSetup { mounted: false };
        }
    }
    if let Err(e) = sys::mount(
        &dev,
        paths::DATA_MOUNT,
        "ext4",
        libc::MS_NOATIME | libc::MS_NODEV,
        "",
    ) {
        logs.init(
            3,
            &format!("mount {dev} on /data failed: {e}; running on a RAM disk"),
        );
        let _ = sys::mount("tmpfs", paths::DATA_MOUNT, "tmpfs", 0, "mode=0755");
        return DataSetup { mounted: false };
    }
    logs.init(6, &format!("mounted {dev} on /data"));
    // Online resize when the partition is larger than the filesystem.
    let sb = std::fs::File::open(&dev)
        .ok()
        .and_then(|mut f| data::read_super(&mut f, 0).ok().flatten());
    if let Some(sb) = sb {
        let want = dev_size / sb.block_size;
        if want > sb.blocks && (want - sb.blocks) * sb.block_size >= data::MIN_GROW {
            match data::resize_fs(paths::DATA_MOUNT, want) {
                Ok(()) => logs.init(
                    5,
                    &format!(
                        "resized /data from {} to {} MiB",
                        (sb.blocks * sb.block_size) >> 20,
                        (want * sb.block_size) >> 20
                    ),
                ),
                Err(e) => logs.init(3, &format!("online resize of /data failed: {e}")),
            }
        }
    }
    DataSetup { mounted: true }
}

fn load_config(logs: &LogStore) -> (Config, String) {
    let on_data = paths::APPLIANCE_CONFIG;
    if !Path::new(on_data).exists() {
        if let Some(dir) = Path::new(on_data).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::copy(BAKED_CONFIG, on_data).is_ok() {
            let _ = std::fs::File::open(on_data).and_then(|f| f.sync_all());
            let _ = data::fsync_dir(Path::new(on_data));
            logs.init(6, &format!("installed the image's config as {on_data}"));
        }
    }
    for path in [on_data, BAKED_CONFIG] {
        match Config::load(Path::new(path)) {
            Ok(c) => return (c, path.to_string()),
            Err(e) => logs.init(3, &format!("{e}")),
        }
    }
    logs.init(3, "no usable config: using the built-in dev defaults");
    let mut c = Config::default();
    c.node.dev = true;
    c.node.data_dir = Some(paths::APPLIANCE_CHAIN_DIR.into());
    (c, BAKED_CONFIG.to_string())
}

/// The configured hostname, if any (an empty one counts as none).
fn configured_hostname(cfg: &Config) -> Option<String> {
    cfg.system.hostname.clone().filter(|h| !h.is_empty())
}

/// `aergo-<last 3 bytes of the first NIC's MAC>` (NIC drivers must be loaded), else `aergo`.
fn hostname_from_mac() -> String {
    if let Ok(mut nl) = net::Netlink::open() {
        if let Ok(links) = nl.links() {
            if let Some(l) = links.iter().find(|l| !l.is_loopback() && l.mac.len() >= 3) {
                let tail: String = l
                    .mac
                    .iter()
                    .skip(l.mac.len().saturating_sub(3))
                    .map(|b| format!("{b:02x}"))
                    .collect();
                return format!("aergo-{tail}");
            }
        }
    }
    "aergo".into()
}

fn apply_hostname(logs: &LogStore, host: &str) {
    match sys::set_hostname(host) {
        Ok(()) => logs.init(6, &format!("hostname {host}")),
        Err(e) => logs.init(3, &format!("sethostname: {e}")),
    }
}

fn seed_entropy(logs: &LogStore) {
    let seed = "/data/etc/random-seed";
    if let Ok(bytes) = std::fs::read(seed) {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/urandom") {
            let _ = f.write_all(&bytes);
        }
    }
    save_seed();
    logs.init(6, "entropy seeded");
}

fn save_seed() {
    let mut b = [0u8; 512];
    if sys::random_bytes(&mut b).is_ok() {
        let _ = std::fs::write("/data/etc/random-seed", b);
    }
}

/// Longest the network waits for the module thread (NIC drivers) before configuring what it
/// finds.
const COLDPLUG_WAIT: Duration = Duration::from_secs(30);

/// Brings the network up (after the NIC drivers are loaded): sets the MAC-derived hostname
/// when none is configured, loopback; then either the
/// `[[system.interfaces]]` plan (static addresses now, one DHCP thread per DHCP interface)
/// or, with none configured, DHCP on the first NIC with carrier. Starts SNTP once an
/// address is there.
fn network(ctx: Arc<Ctx>, cfg: Config, coldplug: Arc<sys::Latch>) {
    let logs = ctx.logs.clone();
    if !coldplug.wait(COLDPLUG_WAIT) {
        logs.init(
            4,
            "modules still loading: configuring the NICs found so far",
        );
    }
    if configured_hostname(&cfg).is_none() {
        apply_hostname(&logs, &hostname_from_mac());
    }
    let mut nl = match net::Netlink::open() {
        Ok(n) => n,
        Err(e) => {
            logs.init(3, &format!("netlink: {e}; no networking"));
            return;
        }
    };
    let links = nl.links().unwrap_or_default();
    for l in links.iter().filter(|l| l.is_loopback()) {
        if let Err(e) = nl.set_up(l.index) {
            logs.init(3, &format!("lo up: {e}"));
        }
    }
    let hostname = sys::hostname();
    let mut dhcp_on: Vec<(net::Link, bool)> = Vec::new();
    if !cfg.system.interfaces.is_empty() {
        // A NIC may still be registering: give missing ones a few seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut p = net::plan(&cfg.system.interfaces, &links);
        while p.missing() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            p = net::plan(&cfg.system.interfaces, &nl.links().unwrap_or_default());
        }
        for problem in &p.problems {
            logs.init(3, &format!("network: {problem}"));
        }
        for item in p.ifaces {
            let link = item.link;
            if let Err(e) = nl.set_up(link.index) {
                logs.init(3, &format!("{}: link up: {e}", link.name));
            }
            match item.step {
                net::Step::Dhcp { default_route } => dhcp_on.push((link, default_route)),
                net::Step::Static {
                    addr,
                    prefix,
                    gateway,
                } => {
                    match nl.add_addr(link.index, addr, prefix) {
                        Ok(()) => logs.init(5, &format!("{}: {addr}/{prefix} (static)", link.name)),
                        Err(e) => {
                            logs.init(3, &format!("{}: address {addr}/{prefix}: {e}", link.name))
                        }
                    }
                    if let Some(gw) = gateway {
                        match nl.default_route(link.index, gw) {
                            Ok(()) => {
                                logs.init(5, &format!("default route via {gw} ({})", link.name))
                            }
                            Err(e) => logs.init(3, &format!("default route via {gw}: {e}")),
                        }
                    }
                }
            }
        }
    } else {
        for l in links.iter().filter(|l| !l.is_loopback()) {
            let _ = nl.set_up(l.index);
        }
        // First NIC with carrier (wait a little for link negotiation).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now_links = nl.links().unwrap_or_default();
            match net::auto_pick(&now_links) {
                Some((l, true)) => {
                    dhcp_on.push((l, true));
                    break;
                }
                Some((l, false)) if std::time::Instant::now() >= deadline => {
                    logs.init(
                        4,
                        &format!("no NIC reports carrier; trying DHCP on {}", l.name),
                    );
                    dhcp_on.push((l, true));
                    break;
                }
                None if std::time::Instant::now() >= deadline => {
                    logs.init(4, "no network interface found");
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    ctx.facts.lock().addresses = nl.addresses().unwrap_or_default();
    if dhcp_on.is_empty() {
        sntp_loop(&ctx, &cfg);
        return;
    }
    let sntp_started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (link, default_route) in dhcp_on {
        let cfg2 = cfg.clone();
        let host = hostname.clone();
        let started = sntp_started.clone();
        spawn_named(&ctx, &format!("dhcp-{}", link.name), move |c| {
            dhcp_loop(&c, &cfg2, &link, default_route, &host, &started)
        });
    }
}

/// Keeps a DHCP lease on `link`: acquires, applies (address; default route and DNS when
/// this interface owns the default route), renews by a fresh exchange at half the lease.
fn dhcp_loop(
    ctx: &Arc<Ctx>,
    cfg: &Config,
    link: &net::Link,
    default_route: bool,
    hostname: &str,
    sntp_started: &std::sync::atomic::AtomicBool,
) {
    let logs = &ctx.logs;
    let mut nl = match net::Netlink::open() {
        Ok(n) => n,
        Err(e) => {
            logs.init(3, &format!("netlink ({}): {e}", link.name));
            return;
        }
    };
    loop {
        match dhcp::acquire(&link.name, &link.mac, hostname, 4) {
            Ok(lease) => {
                let mut msg = format!(
                    "{}: {}/{} (DHCP, lease {} s)",
                    link.name, lease.addr, lease.prefix, lease.lease_secs
                );
                if let Err(e) = nl.add_addr(link.index, lease.addr, lease.prefix) {
                    msg = format!("{msg}; adding the address failed: {e}");
                }
                match lease.router {
                    Some(gw) if default_route => match nl.default_route(link.index, gw) {
                        Ok(()) => msg = format!("{msg}, gateway {gw}"),
                        Err(e) => msg = format!("{msg}; default route failed: {e}"),
                    },
                    Some(gw) => {
                        msg = format!("{msg}, router {gw} not used (default route elsewhere)")
                    }
                    None => {}
                }
                if !lease.dns.is_empty()
                    && (default_route || !Path::new("/etc/resolv.conf").exists())
                {
                    let text: String = lease
                        .dns
                        .iter()
                        .map(|d| format!("nameserver {d}\n"))
                        .collect();
                    write_file("/etc/resolv.conf", &text);
                }
                logs.init(5, &msg);
                ctx.facts.lock().addresses = nl.addresses().unwrap_or_default();
                if !sntp_started.swap(true, Ordering::SeqCst) {
                    let cfg2 = cfg.clone();
                    spawn_named(ctx, "sntp", move |c| sntp_loop(&c, &cfg2));
                }
                // Renew at half the lease (a fresh exchange keeps the same address).
                let half = u64::from(lease.lease_secs / 2).max(30);
                std::thread::sleep(Duration::from_secs(half));
            }
            Err(e) => {
                logs.init(4, &format!("DHCP on {}: {e}; retrying in 30 s", link.name));
                std::thread::sleep(Duration::from_secs(30));
            }
        }
    }
}

fn sntp_loop(ctx: &Ctx, cfg: &Config) {
    if cfg.system.ntp_servers.is_empty() {
        ctx.logs.init(
            6,
            "no system.ntp_servers configured: clock not synchronised",
        );
        return;
    }
    loop {
        let mut done = false;
        for server in &cfg.system.ntp_servers {
            match sntp::query(server, Duration::from_secs(3)) {
                Ok(off) => {
                    ctx.facts.lock().clock_offset_ms = Some(off * 1000.0);
                    match sntp::correction(off) {
                        sntp::Correction::Step => match sntp::step_clock(off) {
                            Ok(()) => ctx
                                .logs
                                .init(5, &format!("clock stepped by {off:+.3} s ({server})")),
                            Err(e) => ctx.logs.init(3, &format!("clock step failed: {e}")),
                        },
                        sntp::Correction::Slew => match sntp::slew_clock(off) {
                            Ok(()) => ctx.logs.init(
                                6,
                                &format!("clock slewed by {:+.1} ms ({server})", off * 1000.0),
                            ),
                            Err(e) => ctx.logs.init(3, &format!("clock slew failed: {e}")),
                        },
                    }
                    done = true;
                    break;
                }
                Err(e) => ctx.logs.init(4, &format!("SNTP {server}: {e}")),
            }
        }
        // ntpd's shortest poll: a clock drifting 100 ppm moves 6 ms between two polls.
        std::thread::sleep(Duration::from_secs(if done { 64 } else { 30 }));
    }
}

/// Watches input devices for the power key (ACPI power button via the `button` module).
fn watch_power_button(ctx: &Arc<Ctx>) {
    let Ok(dir) = std::fs::read_dir("/dev/input") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("event") {
            continue;
        }
        let path = e.path();
        spawn_named(ctx, &format!("input-{name}"), move |c| {
            let Ok(mut f) = std::fs::File::open(&path) else {
                return;
            };
            let mut ev = [0u8; 24];
            while f.read_exact(&mut ev).is_ok() {
                let kind = u16::from_ne_bytes([ev[16], ev[17]]);
                let code = u16::from_ne_bytes([ev[18], ev[19]]);
                let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
                // EV_KEY, KEY_POWER, pressed
                if kind == 1 && code == 116 && value == 1 {
                    c.shutdown(Shutdown::Poweroff, "power button");
                }
            }
        });
    }
}

fn finish_shutdown(ctx: &Ctx, kind: Shutdown, watchdog: &mut Option<std::fs::File>) -> ! {
    let logs = &ctx.logs;
    logs.init(5, "all services stopped");
    if ctx.facts.lock().data_mounted {
        save_seed();
    }
    logs.close_files();
    sys::sync();
    if sys::is_mounted(paths::DATA_MOUNT) {
        let mut ok = false;
        for _ in 0..20 {
            if sys::umount(paths::DATA_MOUNT, 0).is_ok() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if ok {
            logs.init(5, "/data unmounted cleanly");
        } else {
            let r = sys::remount_ro(paths::DATA_MOUNT);
            logs.init(3, &format!("/data busy: remounted read-only ({r:?})"));
        }
    }
    sys::sync();
    if let Some(mut w) = watchdog.take() {
        let _ = w.write_all(b"V"); // magic close: do not fire while powering off
    }
    let poweroff = kind == Shutdown::Poweroff;
    logs.init(
        5,
        if poweroff {
            "powering off"
        } else {
            "rebooting"
        },
    );
    let e = sys::reboot(poweroff);
    logs.init(0, &format!("reboot(2) failed: {e}"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts module loading (always-list and coldplug, see [`sys::load_modules`]) on its own
/// thread; the latch is set when it is done (also if it panicked or could not start).
fn start_modules(logs: &Arc<LogStore>, release: &str) -> Arc<sys::Latch> {
    let latch = Arc::new(sys::Latch::default());
    let run = {
        let logs = logs.clone();
        let release = release.to_string();
        move || {
            let t = std::time::Instant::now();
            let r = std::panic::catch_unwind(|| sys::load_modules(&release));
            match r {
                Ok((n, errs)) => {
                    for e in &errs {
                        logs.init(4, &format!("module {e}"));
                    }
                    logs.init(
                        6,
                        &format!(
                            "loaded {n} kernel modules in {} ms",
                            t.elapsed().as_millis()
                        ),
                    );
                }
                Err(_) => logs.init(3, "module loading panicked: some drivers may be missing"),
            }
        }
    };
    let set = sys::SetOnDrop(latch.clone());
    let spawned = std::thread::Builder::new()
        .name("modules".into())
        .spawn(move || {
            let _set = set;
            run();
        });
    if let Err(e) = spawned {
        logs.init(
            3,
            &format!("cannot start the module thread ({e}): no drivers"),
        );
        latch.set();
    }
    latch
}

/// Finds the running slot's system partition (`AERGO-SYSTEM-A`/`-B`, squashfs) and mounts
/// it read-only at `/usr` (`/bin` and `/sbin` link there). Warns when it comes from another
/// image build.
fn mount_system(logs: &LogStore, modules_done: &sys::Latch, slot: &str) -> bool {
    let label = aergo_os::slots::system_label(slot);
    let label = label.as_str();
    let Some(part) = data::wait_partition(label, Duration::from_secs(15)) else {
        logs.init(2, &format!("no partition labelled {label}"));
        return false;
    };
    if !sys::wait_filesystem("squashfs", modules_done, Duration::from_secs(15)) {
        logs.init(
            2,
            "the kernel has no squashfs (module missing from the image?)",
        );
        return false;
    }
    let dev = part.dev().display().to_string();
    if let Err(e) = sys::mount(
        &dev,
        paths::SYSTEM_MOUNT,
        "squashfs",
        libc::MS_RDONLY | libc::MS_NODEV,
        "",
    ) {
        logs.init(
            2,
            &format!("mount {dev} (squashfs) on {}: {e}", paths::SYSTEM_MOUNT),
        );
        return false;
    }
    let id = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let (ours, theirs) = (id(BUILD_ID), id(SYSTEM_BUILD_ID));
    if ours == theirs {
        logs.init(
            6,
            &format!(
                "mounted system partition {dev} on {} (build {ours})",
                paths::SYSTEM_MOUNT
            ),
        );
    } else {
        logs.init(
            4,
            &format!(
                "system partition {dev} is from build `{theirs}`, this kernel's initramfs from `{ours}`: the disk does not match the boot image"
            ),
        );
    }
    true
}

fn boot(logs: Arc<LogStore>) {
    let mount_errors = sys::mount_pseudo();
    logs.open_kmsg();
    write_file("/proc/sys/kernel/printk_devkmsg", "on\n");
    for e in mount_errors {
        logs.init(3, &e);
    }
    let l = logs.clone();
    std::panic::set_hook(Box::new(move |info| {
        l.init(3, &format!("panic: {info}"));
    }));
    let sigset = match sys::block_signals() {
        Ok(s) => Some(s),
        Err(e) => {
            logs.init(3, &format!("cannot block signals: {e}"));
            None
        }
    };
    sys::disable_cad();
    let release = sys::kernel_release();
    logs.init(
        5,
        &format!(
            "AERGO OS {} starting on Linux {release}",
            env!("CARGO_PKG_VERSION")
        ),
    );

    // Kernel modules load on their own thread, disk drivers and filesystems first; the boot
    // goes on as soon as what it needs is there, NIC and other drivers follow meanwhile.
    let modules_done = start_modules(&logs, &release);
    let efivars = upgrade::mount_efivarfs(&logs, &modules_done);
    let slot_boot = upgrade::detect(&logs, efivars);
    let system_mounted = mount_system(&logs, &modules_done, &slot_boot.running);

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let console = pick_console(&cmdline);

    let (baked, _) = {
        match Config::load(Path::new(BAKED_CONFIG)) {
            Ok(c) => (c, ()),
            Err(_) => (Config::default(), ()),
        }
    };
    if !sys::wait_filesystem("ext4", &modules_done, Duration::from_secs(15)) {
        logs.init(3, "the kernel has no ext4 (module missing from the image?)");
    }
    let data = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup_data(&logs, &baked)))
        .unwrap_or(DataSetup { mounted: false });
    for d in ["etc", "chain", "fs", "log"] {
        let _ = std::fs::create_dir_all(Path::new(paths::DATA_MOUNT).join(d));
    }
    let (cfg, cfg_path) = load_config(&logs);
    // Without a configured hostname the network thread derives one from the MAC once the
    // NIC drivers are loaded.
    if let Some(host) = configured_hostname(&cfg) {
        apply_hostname(&logs, &host);
    }
    seed_entropy(&logs);
    logs.set_dir(Path::new(paths::APPLIANCE_LOG_DIR));

    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    let runner = services::ProcRunner {
        logs: logs.clone(),
        cwd: paths::DATA_MOUNT.into(),
    };
    let specs = services::table(&cfg, &cfg_path, console.clone());
    let ctx = Arc::new(Ctx::new(
        Supervisor::new(specs, Backoff::default()),
        logs.clone(),
        runner,
        wake_tx,
    ));
    ctx.facts.lock().data_mounted = data.mounted;
    let (slot_ctx, reboot_now) = upgrade::on_boot(&logs, slot_boot, &cfg);
    let on_trial = slot_ctx.trial.is_some();
    *ctx.slots.lock() = Some(slot_ctx);
    if reboot_now {
        ctx.shutdown(Shutdown::Reboot, "this slot failed its trial");
    }
    if on_trial {
        spawn_named(&ctx, "upgrade-trial", |c| loop {
            upgrade::trial_tick(&c, sys::monotonic());
            let active = c.slots.lock().as_ref().is_some_and(|s| s.trial.is_some());
            if !active {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        });
    }

    // Reboots scheduled by upgrades (`--reboot-at`): checked every second against the wall
    // clock, so a clock stepped by SNTP moves them with it.
    spawn_named(&ctx, "reboot-timer", |c| loop {
        upgrade::reboot_tick(&c, upgrade::unix_now());
        std::thread::sleep(Duration::from_secs(1));
    });

    let token_path = if data.mounted {
        aergo_os::control::TOKEN_FILE.to_string()
    } else {
        "/run/aergo/init.token".to_string()
    };
    match data::ensure_token(Path::new(&token_path)) {
        Ok(t) => {
            logs.init(
                5,
                &format!("control token: {t} (remote: aergo os status --init-addr <this host>:{CONTROL_TCP_PORT} --init-token <token>)"),
            );
            *ctx.token.lock() = Some(t);
        }
        Err(e) => logs.init(
            3,
            &format!("cannot create the control token ({e}): TCP control refuses everyone"),
        ),
    }

    if cfg.fs.enabled {
        match data::ensure_token(Path::new(services::FS_TOKEN_FILE)) {
            Ok(t) => logs.init(5, &format!("AergoFS write token: {t}")),
            Err(e) => logs.init(3, &format!("cannot create the AergoFS token: {e}")),
        }
    }

    // Signals: reaping and shutdown requests.
    if let Some(set) = sigset {
        spawn_named(&ctx, "signals", move |c| loop {
            let Some(sig) = sys::wait_signal(&set) else {
                continue;
            };
            match sig {
                libc::SIGCHLD => {
                    while let Some((pid, code, signal)) = sys::reap() {
                        let now = sys::monotonic();
                        let at = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                            .unwrap_or(0);
                        let exit = ExitInfo {
                            code,
                            signal,
                            at_unix_ms: at,
                        };
                        let name = c.sup.lock().on_exit(pid, exit.clone(), now);
                        if let Some(name) = name {
                            c.logs
                                .init(5, &format!("{name} (pid {pid}) exited: {exit}"));
                        }
                    }
                    c.wake();
                }
                libc::SIGTERM | libc::SIGPWR | libc::SIGUSR2 => {
                    c.shutdown(Shutdown::Poweroff, &format!("signal {sig}"))
                }
                libc::SIGINT | libc::SIGUSR1 => {
                    c.shutdown(Shutdown::Reboot, &format!("signal {sig}"))
                }
                _ => {}
            }
        });
    }
    spawn_named(&ctx, "control-unix", |c| {
        if let Err(e) = ctl::serve_unix(c.clone(), paths::INIT_SOCKET) {
            c.logs
                .init(3, &format!("control socket {}: {e}", paths::INIT_SOCKET));
        }
    });
    spawn_named(&ctx, "control-tcp", |c| {
        let addr = format!("0.0.0.0:{CONTROL_TCP_PORT}");
        if let Err(e) = ctl::serve_tcp(c.clone(), &addr) {
            c.logs.init(3, &format!("control TCP {addr}: {e}"));
        }
    });
    let cfg2 = cfg.clone();
    let cp = modules_done.clone();
    spawn_named(&ctx, "network", move |c| network(c, cfg2, cp));
    if !system_mounted {
        logs.init(
            2,
            "no system partition: the services cannot start (write the whole image to the disk)",
        );
    }
    // The watchdog and the power button are opened once coldplug has loaded their drivers.
    let mut watchdog: Option<std::fs::File> = None;
    let mut hardware_ready = false;

    // The supervisor loop.
    let mut last_feed = sys::monotonic();
    let mut quiet_console = false;
    let mut shutdown_started: Option<Duration> = None;
    let console_is_serial = console.as_deref().is_some_and(|c| c.contains("ttyS"));
    loop {
        let _ = wake_rx.recv_timeout(Duration::from_millis(200));
        let now = sys::monotonic();
        if !hardware_ready && modules_done.is_set() {
            hardware_ready = true;
            ctx.guard("hardware", || watch_power_button(&ctx));
            watchdog = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/watchdog")
                .ok();
            if let Some(w) = watchdog.as_ref() {
                ctx.facts.lock().watchdog = true;
                // On QEMU's q35 the i6300ESB registers first (watchdog0 = /dev/watchdog);
                // the chipset's iTCO stays watchdog1, unopened, its driver keeping the
                // chipset's NO_REBOOT bit set so it cannot fire.
                let (name, timeout) = sys::watchdog_info(w);
                logs.init(
                    6,
                    &format!(
                        "hardware watchdog {} (/dev/watchdog, timeout {}): feeding it every 5 s",
                        name.as_deref().unwrap_or("(unnamed)"),
                        timeout.map_or_else(|| "unknown".to_string(), |t| format!("{t} s"))
                    ),
                );
            }
        }
        ctx.guard("supervisor", || {
            if ctx.inject_supervisor_panic.swap(false, Ordering::SeqCst) {
                #[allow(clippy::panic)]
                {
                    std::panic::panic_any("injected panic in supervisor (diagnostics)".to_string());
                }
            }
            let mut runner = ctx.runner.lock().clone();
            ctx.sup.lock().tick(now, &mut runner);
        });
        if ctx.inject_supervisor_hang.load(Ordering::SeqCst) {
            logs.init(
                2,
                "supervisor loop stopped on request (diagnostics): the watchdog must reset the machine",
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if let Some(w) = watchdog.as_mut() {
            if now.saturating_sub(last_feed) >= Duration::from_secs(5) {
                let _ = w.write_all(b"\0");
                last_feed = now;
            }
        }
        // While the dashboard owns the serial console, init's and services' messages stay
        // in the log ring (kernel console level lowered), not on the screen.
        let dash_on_console = {
            let s = ctx.sup.lock();
            console_is_serial && s.shutting_down().is_none() && s.pid("dashboard").is_some()
        };
        if dash_on_console != quiet_console {
            quiet_console = dash_on_console;
            logs.set_echo(!quiet_console);
            write_file(
                "/proc/sys/kernel/printk",
                if quiet_console {
                    "3 4 1 7\n"
                } else {
                    "7 4 1 7\n"
                },
            );
        }
        let (kind, all_stopped) = {
            let s = ctx.sup.lock();
            (s.shutting_down(), s.all_stopped())
        };
        if let Some(kind) = kind {
            let started = *shutdown_started.get_or_insert(now);
            if all_stopped {
                finish_shutdown(&ctx, kind, &mut watchdog);
            }
            if now.saturating_sub(started) > SHUTDOWN_LIMIT {
                logs.init(3, "shutdown is taking too long: killing every service");
                let report = ctx.sup.lock().report(now);
                for s in report {
                    if let Some(pid) = s.pid {
                        sys::kill(pid, libc::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
                finish_shutdown(&ctx, kind, &mut watchdog);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn console_choice() {
        assert_eq!(pick_console("aergo.console=none"), None);
        assert_eq!(
            pick_console("x aergo.console=tty1").as_deref(),
            Some("/dev/tty1")
        );
        assert_eq!(
            pick_console("aergo.console=ttyS0").as_deref(),
            Some("/dev/ttyS0")
        );
        assert!(pick_console("").is_some());
    }
}
