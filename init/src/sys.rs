//! Thin wrappers over the system calls init needs: mounts, kernel modules (`finit_module`),
//! hostname, signals, `reboot(2)`, and small `/proc` readers. Every function returns an
//! error instead of panicking.

use std::ffi::CString;
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
        if fs == "efivarfs" && !Path::new("/sys/firmware/efi").exists() {
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

/// Loads the image's always-needed modules, then the drivers whose aliases match present
/// devices, in rounds until nothing new matches (a bus driver such as virtio_pci reveals
/// the devices of the next round). Dependencies come first (`aergo-modules.dep`).
/// Returns (loaded, failures). ENODEV/ENXIO (hardware absent) are not failures.
pub fn load_modules(release: &str) -> (usize, Vec<String>) {
    use aergo_os::sys::modules::{canonical, Aliases, ModuleDb, ALIAS_LIST, DEP_LIST, LOAD_LIST};
    let base = Path::new("/lib/modules").join(release);
    let read = |name: &str| std::fs::read_to_string(base.join(name));
    let mut loaded_names = std::collections::BTreeSet::new();
    let mut loaded = 0;
    let mut errs = Vec::new();
    let mut load = |rel: &str, errs: &mut Vec<String>| {
        if !loaded_names.insert(canonical(rel)) {
            return 0;
        }
        let t = std::time::Instant::now();
        let r = load_module(&base.join(rel));
        let ms = t.elapsed().as_millis();
        if ms >= 100 {
            errs.push(format!("{rel}: slow load, {ms} ms"));
        }
        match r {
            Ok(()) => 1,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO)) => 0,
            Err(e) => {
                errs.push(format!("{rel}: {e}"));
                0
            }
        }
    };
    match read(LOAD_LIST) {
        Ok(list) => {
            for rel in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
                loaded += load(rel, &mut errs);
            }
        }
        Err(e) => errs.push(format!("no module list for kernel {release}: {e}")),
    }
    let db = ModuleDb::parse(&read(DEP_LIST).unwrap_or_default(), "");
    let aliases = Aliases::parse(&read(ALIAS_LIST).unwrap_or_default());
    let mut tried = std::collections::BTreeSet::new();
    for _round in 0..6 {
        let mut wanted: Vec<String> = Vec::new();
        for m in modaliases() {
            for module in aliases.modules_for(&m) {
                if tried.insert(module.clone()) {
                    wanted.push(module);
                }
            }
        }
        if wanted.is_empty() {
            break;
        }
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        match db.resolve(&names) {
            Ok(order) => {
                for rel in order {
                    loaded += load(&rel, &mut errs);
                }
            }
            Err(e) => errs.push(e.to_string()),
        }
    }
    (loaded, errs)
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
