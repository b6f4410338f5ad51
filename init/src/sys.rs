//! Thin wrappers over the system calls init needs: mounts, kernel modules (`finit_module`),
//! hostname, signals, `reboot(2)`, and small `/proc` readers. Every function returns an
//! error instead of panicking.

use std::ffi::CString;

/// `AF_INET` as the one-byte family of netlink headers (`u16::from` gives the `sa_family_t`).
pub const AF_INET: u8 = 2;
/// `AF_NETLINK` as a `sa_family_t`.
pub const AF_NETLINK: libc::sa_family_t = 16;
const _: () = assert!(AF_INET as i32 == libc::AF_INET && AF_NETLINK as i32 == libc::AF_NETLINK);

/// `size_of::<T>()` as a `socklen_t`, for the socket structs handed to the kernel.
// Socket addresses and option values are a few dozen bytes: the size always fits.
#[allow(clippy::cast_possible_truncation)]
pub const fn socklen<T>() -> libc::socklen_t {
    std::mem::size_of::<T>() as libc::socklen_t
}
use std::io;
use std::path::Path;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mount(2)`; EBUSY (already mounted) counts as success.
pub fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let (s, t, f, d) = (cstr(src)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            if data.is_empty() {
                std::ptr::null()
            } else {
                d.as_ptr().cast()
            },
        )
    };
    match check(rc) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other,
    }
}

/// Remounts read-only.
pub fn remount_ro(target: &str) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid strings; NULL source/fstype are allowed for MS_REMOUNT.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        )
    })
}

/// `umount2(2)`.
pub fn umount(target: &str, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid string.
    check(unsafe { libc::umount2(t.as_ptr(), flags) })
}

/// Mounts the pseudo filesystems. Returns the errors (each is logged by the caller).
pub fn mount_pseudo() -> Vec<String> {
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let list: [(&str, &str, &str, libc::c_ulong, &str); 9] = [
        ("proc", "/proc", "proc", nosuid, ""),
        ("sysfs", "/sys", "sysfs", nosuid, ""),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "gid=5,mode=620,ptmxmode=000",
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=0755,size=20%",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777,size=20%",
        ),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid, ""),
        (
            "efivarfs",
            "/sys/firmware/efi/efivars",
            "efivarfs",
            nosuid,
            "",
        ),
    ];
    let mut errs = Vec::new();
    for (src, target, fs, flags, data) in list {
        // efivarfs is a module in Debian's kernel: mounted by `upgrade::mount_efivarfs` once
        // the always-list has loaded it.
        if fs == "efivarfs"
            && (!Path::new("/sys/firmware/efi").exists() || !has_filesystem("efivarfs"))
        {
            continue;
        }
        if let Err(e) = mount(src, target, fs, flags, data) {
            errs.push(format!("mount {target} ({fs}): {e}"));
        }
    }
    errs
}

/// Loads one module file with `finit_module`; "already loaded" counts as success.
pub fn load_module(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    let params = cstr("")?;
    // SAFETY: finit_module(fd, params, flags) with an open fd and a valid string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            f.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Every device `modalias` under /sys/bus (what udev's coldplug matches drivers against).
pub fn modaliases() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(buses) = std::fs::read_dir("/sys/bus") else {
        return out;
    };
    for bus in buses.flatten() {
        let Ok(devs) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for d in devs.flatten() {
            if let Ok(m) = std::fs::read_to_string(d.path().join("modalias")) {
                let m = m.trim();
                if !m.is_empty() {
                    out.push(m.to_string());
                }
            }
        }
    }
    out
}

/// Loads module files (dependencies first), remembering what was loaded. Counts loads and
/// collects failures; ENODEV/ENXIO (hardware absent) are not failures, EEXIST is a success.
struct Loader {
    base: std::path::PathBuf,
    loaded_names: std::collections::BTreeSet<String>,
    loaded: usize,
    errs: Vec<String>,
}

impl Loader {
    fn new(release: &str) -> Self {
        Self {
            base: Path::new("/lib/modules").join(release),
            loaded_names: Default::default(),
            loaded: 0,
            errs: Vec::new(),
        }
    }

    fn read(&self, name: &str) -> io::Result<String> {
        std::fs::read_to_string(self.base.join(name))
    }

    fn load(&mut self, rel: &str) {
        if !self
            .loaded_names
            .insert(aergo_os::sys::modules::canonical(rel))
        {
            return;
        }
        let t = std::time::Instant::now();
        let r = load_module(&self.base.join(rel));
        let ms = t.elapsed().as_millis();
        if ms >= 100 {
            self.errs.push(format!("{rel}: slow load, {ms} ms"));
        }
        match r {
            Ok(()) => self.loaded += 1,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO)) => {}
            Err(e) => self.errs.push(format!("{rel}: {e}")),
        }
    }
}

/// Module classes in loading order. Lower is earlier.
const BUS: &[&str] = &["virtio_pci"];
/// Disk drivers that probe quickly, and the virtio RNG (the tokens made at boot wait for
/// the kernel's random pool; without RDRAND this device is what fills it early).
const STORAGE: &[&str] = &["virtio_blk", "nvme", "virtio_scsi", "sd_mod", "virtio_rng"];
/// The filesystems the boot mounts (efivarfs: which slot booted, before the system partition
/// is chosen; squashfs: system partition; ext4 and its checksum).
const FILESYSTEMS: &[&str] = &[
    "efivarfs",
    "squashfs",
    "crc32c_intel",
    "crc32c_generic",
    "ext4",
];
/// Network drivers (the RPC is reached through them).
const NICS: &[&str] = &["virtio_net", "e1000", "e1000e", "igb", "ixgbe"];
/// Disk drivers whose probe waits for link negotiation on every port.
const SLOW_STORAGE: &[&str] = &["ahci"];

/// Loading order of a module: bus drivers first (they reveal devices), then disk drivers
/// (and the RNG) and the filesystems (the boot waits for them), then NICs, then AHCI (its
/// probe waits for SATA link negotiation), then everything else (watchdogs, buttons,
/// input). Lower is earlier; (class, rank in class).
pub fn coldplug_priority(module: &str) -> (u8, u8) {
    let name = aergo_os::sys::modules::canonical(module);
    for (class, list) in [BUS, STORAGE, FILESYSTEMS, NICS, SLOW_STORAGE]
        .iter()
        .enumerate()
    {
        if let Some(i) = list.iter().position(|m| *m == name) {
            // Five classes of a few dozen modules each: both fit a u8.
            return (
                u8::try_from(class).unwrap_or(u8::MAX),
                u8::try_from(i).unwrap_or(u8::MAX),
            );
        }
    }
    (5, 0)
}

/// The modules of `wanted` to load in this step: those of the most urgent class present,
/// most urgent first (the rest wait for the next step, after a rescan).
pub fn coldplug_step(wanted: &[String]) -> Vec<String> {
    let Some(class) = wanted.iter().map(|m| coldplug_priority(m).0).min() else {
        return Vec::new();
    };
    let mut step: Vec<String> = wanted
        .iter()
        .filter(|m| coldplug_priority(m).0 == class)
        .cloned()
        .collect();
    step.sort_by_key(|m| (coldplug_priority(m), m.clone()));
    step
}

/// Loads every module the boot needs, on one thread (concurrent `finit_module`s are slower:
/// the kernel serialises much of module loading): the image's always-list
/// (`aergo-modules.load`: filesystems, input) and the drivers whose aliases
/// (`aergo-modules.alias`) match the `modalias` of present devices (coldplug, as udev
/// does), in steps by [`coldplug_priority`] with a rescan after each (a bus driver such as
/// virtio_pci reveals the devices of the next step), until nothing new matches.
/// Dependencies come first (`aergo-modules.dep`). Returns (loaded, failures).
pub fn load_modules(release: &str) -> (usize, Vec<String>) {
    use aergo_os::sys::modules::{Aliases, ModuleDb, ALIAS_LIST, DEP_LIST, LOAD_LIST};
    let mut l = Loader::new(release);
    let db = ModuleDb::parse(&l.read(DEP_LIST).unwrap_or_default(), "");
    let aliases = Aliases::parse(&l.read(ALIAS_LIST).unwrap_or_default());
    // The always-list holds module paths in dependency order; its top-level names are what
    // the steps schedule (dependencies are resolved again when loading).
    let mut always: Vec<String> = match l.read(LOAD_LIST) {
        Ok(list) => list
            .lines()
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(aergo_os::sys::modules::canonical)
            .collect(),
        Err(e) => {
            l.errs
                .push(format!("no module list for kernel {release}: {e}"));
            Vec::new()
        }
    };
    let mut tried = std::collections::BTreeSet::new();
    for _step in 0..24 {
        let mut wanted: Vec<String> = Vec::new();
        for module in always.iter().cloned().chain(
            modaliases()
                .iter()
                .flat_map(|m| aliases.modules_for(m))
                .collect::<Vec<_>>(),
        ) {
            if !tried.contains(&module) && !wanted.contains(&module) {
                wanted.push(module);
            }
        }
        let step = coldplug_step(&wanted);
        if step.is_empty() {
            break;
        }
        for m in &step {
            tried.insert(m.clone());
            match db.resolve(&[m.as_str()]) {
                Ok(order) => {
                    for rel in order {
                        l.load(&rel);
                    }
                }
                Err(e) => l.errs.push(e.to_string()),
            }
        }
        always.retain(|m| !tried.contains(m));
    }
    (l.loaded, l.errs)
}

/// Whether the kernel knows filesystem `name` (`/proc/filesystems`).
pub fn has_filesystem(name: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().next_back() == Some(name))
        })
        .unwrap_or(false)
}

/// Waits until filesystem `name` is registered, `modules_done` is set without it, or
/// `timeout` passes. True when it is there.
pub fn wait_filesystem(name: &str, modules_done: &Latch, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if has_filesystem(name) {
            return true;
        }
        if modules_done.is_set() {
            return has_filesystem(name);
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A one-shot event threads can wait for (e.g. "coldplug finished").
#[derive(Debug, Default)]
pub struct Latch {
    done: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Latch {
    /// Marks the event as happened and wakes every waiter.
    pub fn set(&self) {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        *d = true;
        self.cv.notify_all();
    }

    /// Whether the event happened.
    pub fn is_set(&self) -> bool {
        *self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` for the event; true if it happened.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (d, _) = self
            .cv
            .wait_timeout_while(d, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *d
    }
}

/// Sets the latch when dropped (also when the thread holding it unwinds).
pub struct SetOnDrop(pub std::sync::Arc<Latch>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Kernel release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| {
            // Before /proc is mounted: uname(2).
            // SAFETY: uname fills a zeroed struct.
            let mut u: libc::utsname = unsafe { std::mem::zeroed() };
            // SAFETY: u is a valid utsname.
            if unsafe { libc::uname(&mut u) } == 0 {
                // SAFETY: release is NUL-terminated by the kernel.
                unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
                    .to_string_lossy()
                    .to_string()
            } else {
                String::new()
            }
        })
}

/// Sets the hostname.
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length of a valid byte slice.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

/// The hostname.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Blocks the signals init handles synchronously (inherited by every thread it creates;
/// children get a clean mask in `ProcRunner::spawn`'s pre_exec).
pub fn block_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGCHLD,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGPWR,
            libc::SIGPIPE,
        ] {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Waits for one of the signals in `set`.
pub fn wait_signal(set: &libc::sigset_t) -> Option<i32> {
    // SAFETY: sigwaitinfo with a valid set and a zeroed info struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t and `info` a writable siginfo_t, both live for the call.
    let rc = unsafe { libc::sigwaitinfo(set, &mut info) };
    (rc > 0).then_some(rc)
}

/// Reaps one exited child without blocking: (pid, exit code, signal).
pub fn reap() -> Option<(u32, Option<i32>, Option<i32>)> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid with a valid status pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let (code, sig) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Some((pid as u32, code, sig))
}

/// Sends a signal to a process (and its process group, which each service leads).
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid/pgid we started.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Makes Ctrl-Alt-Del send SIGINT to init instead of rebooting at once.
pub fn disable_cad() {
    // SAFETY: reboot(2) with the documented command.
    unsafe {
        libc::reboot(libc::RB_DISABLE_CAD);
    }
}

/// `sync(2)`.
pub fn sync() {
    // SAFETY: no arguments.
    unsafe { libc::sync() };
}

/// Final `reboot(2)` (power off or restart). Returns only on failure.
pub fn reboot(poweroff: bool) -> io::Error {
    let cmd = if poweroff {
        libc::RB_POWER_OFF
    } else {
        libc::RB_AUTOBOOT
    };
    // SAFETY: reboot(2) as PID 1.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

/// Monotonic time since boot.
pub fn monotonic() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    std::time::Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Total and free bytes of the filesystem at `path`.
pub fn statvfs(path: &str) -> Option<(u64, u64)> {
    let p = cstr(path).ok()?;
    // SAFETY: zeroed statvfs filled by the kernel.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and struct pointer.
    if unsafe { libc::statvfs(p.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((
        st.f_blocks as u64 * st.f_frsize as u64,
        st.f_bavail as u64 * st.f_frsize as u64,
    ))
}

/// Whether `path` is a mount point (listed in /proc/self/mounts).
pub fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(path)))
        .unwrap_or(false)
}

/// Value of `key=` on the kernel command line.
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .next_back()
}

/// Fills `buf` from the kernel's random source.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or(&mut []);
        // SAFETY: writes at most rest.len() bytes into rest.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        done += n as usize;
    }
    Ok(())
}

/// `struct watchdog_info` (linux/watchdog.h).
#[repr(C)]
struct WatchdogInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

/// `WDIOC_GETSUPPORT`: `_IOR('W', 0, struct watchdog_info)`.
const WDIOC_GETSUPPORT: libc::c_ulong = 0x8028_5700;
/// `WDIOC_GETTIMEOUT`: `_IOR('W', 7, int)`.
const WDIOC_GETTIMEOUT: libc::c_ulong = 0x8004_5707;

/// The driver's name for an open watchdog device (`i6300ESB timer`, `iTCO_wdt`, …) and its
/// timeout in seconds, when the driver reports them.
pub fn watchdog_info(f: &std::fs::File) -> (Option<String>, Option<u32>) {
    use std::os::fd::AsRawFd;
    let mut info = WatchdogInfo {
        options: 0,
        firmware_version: 0,
        identity: [0; 32],
    };
    // SAFETY: WDIOC_GETSUPPORT writes one struct watchdog_info into the live `info`.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), WDIOC_GETSUPPORT, &mut info) };
    let name = (rc == 0).then(|| {
        let end = info.identity.iter().position(|b| *b == 0).unwrap_or(32);
        String::from_utf8_lossy(info.identity.get(..end).unwrap_or_default()).into_owned()
    });
    let mut secs: libc::c_int = 0;
    // SAFETY: WDIOC_GETTIMEOUT writes one int into the live `secs`.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), WDIOC_GETTIMEOUT, &mut secs) };
    let timeout = if rc == 0 {
        u32::try_from(secs).ok()
    } else {
        None
    };
    (name.filter(|n| !n.is_empty()), timeout)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_values() {
        let c = "console=tty0 console=ttyS0,115200 aergo.console=tty1 quiet";
        assert_eq!(cmdline_value(c, "aergo.console").as_deref(), Some("tty1"));
        assert_eq!(cmdline_value(c, "console").as_deref(), Some("ttyS0,115200"));
        assert_eq!(cmdline_value(c, "nope"), None);
    }

    #[test]
    fn modules_load_bus_then_disks_and_filesystems_then_the_rest() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = w(&[
            "ext4",
            "i6300esb",
            "ahci",
            "virtio_pci",
            "squashfs",
            "evdev",
        ]);
        assert_eq!(coldplug_step(&all), w(&["virtio_pci"]));
        let next = w(&[
            "ext4",
            "ahci",
            "virtio-blk",
            "virtio_net",
            "squashfs",
            "nvme",
        ]);
        assert_eq!(coldplug_step(&next), w(&["virtio-blk", "nvme"]));
        let fs = w(&["ext4", "ahci", "virtio_net", "crc32c_intel", "squashfs"]);
        assert_eq!(coldplug_step(&fs), w(&["squashfs", "crc32c_intel", "ext4"]));
        let nics = w(&["ahci", "evdev", "e1000e", "virtio_net"]);
        assert_eq!(coldplug_step(&nics), w(&["virtio_net", "e1000e"]));
        assert_eq!(coldplug_step(&w(&["ahci", "evdev"])), w(&["ahci"]));
        let rest = w(&["i6300esb", "evdev", "button"]);
        assert_eq!(coldplug_step(&rest), w(&["button", "evdev", "i6300esb"]));
        assert!(coldplug_step(&[]).is_empty());
    }

    #[test]
    fn filesystems_are_listed() {
        assert!(has_filesystem("proc"));
        assert!(!has_filesystem("no-such-fs"));
        let done = Latch::default();
        done.set();
        assert!(!wait_filesystem(
            "no-such-fs",
            &done,
            std::time::Duration::from_secs(5)
        ));
    }

    #[test]
    fn latch_wakes_waiters() {
        let l = std::sync::Arc::new(Latch::default());
        assert!(!l.is_set());
        assert!(!l.wait(std::time::Duration::from_millis(10)));
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            let _s = SetOnDrop(l2);
        });
        assert!(l.wait(std::time::Duration::from_secs(10)));
        t.join().unwrap();
        assert!(l.is_set());
    }

    #[test]
    fn proc_readers_work_on_the_host() {
        assert!(rss_kib() > 0);
        assert!(!kernel_release().is_empty());
        assert!(is_mounted("/proc"));
        let (total, free) = statvfs("/").unwrap();
        assert!(total >= free && total > 0);
        let mut b = [0u8; 32];
        random_bytes(&mut b).unwrap();
        assert!(b.iter().any(|x| *x != 0));
    }
}
