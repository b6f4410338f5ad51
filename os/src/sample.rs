//! Resource sampling from procfs, shared by the dashboard and anything else that reports load.
//!
//! The parsers take the text of one `/proc` file so they can be tested on fixtures; a
//! [`Sampler`] reads the files under a root (normally `/proc`), keeps the previous counters
//! and turns them into rates: per-core CPU busy percent, memory, load, disk I/O per device,
//! network throughput per interface, plus filesystem usage through `statvfs(3)`.
//! Nothing here panics; a missing or malformed file is a [`SampleError`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors from reading or parsing procfs.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// A file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file did not have the expected shape.
    #[error("parse {what}: {detail}")]
    Parse {
        /// Which file or record.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

fn perr(what: &'static str, detail: impl Into<String>) -> SampleError {
    SampleError::Parse {
        what,
        detail: detail.into(),
    }
}

/// Cumulative CPU time counters (in clock ticks) of one `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice.
    pub user: u64,
    /// system + irq + softirq.
    pub system: u64,
    /// idle.
    pub idle: u64,
    /// iowait.
    pub iowait: u64,
    /// steal.
    pub steal: u64,
}

impl CpuTimes {
    /// All ticks counted.
    pub fn total(&self) -> u64 {
        self.user + self.system + self.idle + self.iowait + self.steal
    }
    /// Ticks spent not idle (iowait counts as idle).
    pub fn busy(&self) -> u64 {
        self.user + self.system + self.steal
    }
    /// Busy percentage between an earlier sample and this one (0 when no time passed).
    pub fn busy_pct_since(&self, prev: &CpuTimes) -> f32 {
        let total = self.total().saturating_sub(prev.total());
        if total == 0 {
            return 0.0;
        }
        let busy = self.busy().saturating_sub(prev.busy());
        pct(busy as f64 * 100.0 / total as f64)
    }
}

/// A percentage for display: clamped to 0..=100, as f32.
// Narrowing to f32 only drops precision a display does not show; the value is in 0..=100.
#[allow(clippy::cast_possible_truncation)]
fn pct(v: f64) -> f32 {
    v.clamp(0.0, 100.0) as f32
}

/// Whole seconds of a `/proc/uptime` figure. The float cast saturates (negative and NaN give
/// 0), which is what a malformed file should give.
#[allow(clippy::cast_possible_truncation)]
fn whole_secs(v: f64) -> u64 {
    v as u64
}

/// The CPU part of `/proc/stat`: the aggregate line and one entry per core, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// The `cpu` line.
    pub total: CpuTimes,
    /// The `cpuN` lines.
    pub cores: Vec<CpuTimes>,
}

/// Parses `/proc/stat`.
pub fn parse_stat(text: &str) -> Result<CpuStat, SampleError> {
    let mut out = CpuStat::default();
    let mut seen_total = false;
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(label) = it.next() else { continue };
        if !label.starts_with("cpu") {
            continue;
        }
        let nums: Vec<u64> = it
            .map(|f| f.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|e| perr("/proc/stat", format!("{label}: {e}")))?;
        if nums.len() < 4 {
            return Err(perr("/proc/stat", format!("{label}: too few fields")));
        }
        let get = |i: usize| nums.get(i).copied().unwrap_or(0);
        let t = CpuTimes {
            user: get(0) + get(1),
            system: get(2) + get(5) + get(6),
            idle: get(3),
            iowait: get(4),
            steal: get(7),
        };
        if label == "cpu" {
            out.total = t;
            seen_total = true;
        } else {
            out.cores.push(t);
        }
    }
    if !seen_total {
        return Err(perr("/proc/stat", "no aggregate cpu line"));
    }
    Ok(out)
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable (estimated from free + buffers + cached on old kernels).
    pub available: u64,
    /// Buffers.
    pub buffers: u64,
    /// Cached.
    pub cached: u64,
    /// SwapTotal.
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
}

impl MemInfo {
    /// Bytes in use (total minus available).
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
    /// Percentage in use.
    pub fn used_pct(&self) -> f32 {
        if self.total == 0 {
            0.0
        } else {
            pct(self.used() as f64 * 100.0 / self.total as f64)
        }
    }
    /// Swap bytes in use.
    pub fn swap_used(&self) -> u64 {
        self.swap_total.saturating_sub(self.swap_free)
    }
}

/// Parses `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, SampleError> {
    let mut m = MemInfo::default();
    let mut have_avail = false;
    let mut have_total = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let Some(v) = it.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = if it.next() == Some("kB") {
            v.saturating_mul(1024)
        } else {
            v
        };
        match key {
            "MemTotal" => {
                m.total = bytes;
                have_total = true;
            }
            "MemFree" => m.free = bytes,
            "MemAvailable" => {
                m.available = bytes;
                have_avail = true;
            }
            "Buffers" => m.buffers = bytes,
            "Cached" => m.cached = bytes,
            "SwapTotal" => m.swap_total = bytes,
            "SwapFree" => m.swap_free = bytes,
            _ => {}
        }
    }
    if !have_total {
        return Err(perr("/proc/meminfo", "no MemTotal"));
    }
    if !have_avail {
        m.available = (m.free + m.buffers + m.cached).min(m.total);
    }
    Ok(m)
}

/// `/proc/loadavg`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    /// 1-minute load.
    pub one: f32,
    /// 5-minute load.
    pub five: f32,
    /// 15-minute load.
    pub fifteen: f32,
    /// Runnable scheduling entities.
    pub running: u32,
    /// All scheduling entities.
    pub tasks: u32,
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, SampleError> {
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    if f.len() < 4 {
        return Err(perr("/proc/loadavg", "too few fields"));
    }
    let num = |s: &str| {
        s.parse::<f32>()
            .map_err(|e| perr("/proc/loadavg", format!("{s}: {e}")))
    };
    let (running, tasks) = f[3]
        .split_once('/')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((0, 0));
    Ok(LoadAvg {
        one: num(f[0])?,
        five: num(f[1])?,
        fifteen: num(f[2])?,
        running,
        tasks,
    })
}

/// Cumulative counters of one block device from `/proc/diskstats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// Device name (`sda`, `nvme0n1`, `vda1`).
    pub name: String,
    /// Reads completed.
    pub reads: u64,
    /// 512-byte sectors read.
    pub sectors_read: u64,
    /// Writes completed.
    pub writes: u64,
    /// 512-byte sectors written.
    pub sectors_written: u64,
    /// Milliseconds spent doing I/O.
    pub io_ms: u64,
}

/// Parses `/proc/diskstats` (every device, partitions included).
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskCounters>, SampleError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 14 {
            return Err(perr("/proc/diskstats", format!("short line: {line}")));
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.push(DiskCounters {
            name: f[2].to_string(),
            reads: n(3),
            sectors_read: n(5),
            writes: n(7),
            sectors_written: n(9),
            io_ms: n(12),
        });
    }
    Ok(out)
}

/// Cumulative counters of one network interface from `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Interface name.
    pub iface: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errs: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errs: u64,
}

/// Parses `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> Result<Vec<NetCounters>, SampleError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.contains('|') || name.is_empty() {
            continue;
        }
        let f: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|s| s.parse::<u64>().unwrap_or(0))
            .collect();
        if f.len() < 16 {
            return Err(perr("/proc/net/dev", format!("short line for {name}")));
        }
        out.push(NetCounters {
            iface: name.to_string(),
            rx_bytes: f[0],
            rx_packets: f[1],
            rx_errs: f[2],
            tx_bytes: f[8],
            tx_packets: f[9],
            tx_errs: f[10],
        });
    }
    Ok(out)
}

/// One mounted filesystem's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Mount point.
    pub mount: String,
    /// Source device.
    pub device: String,
    /// Filesystem type.
    pub fstype: String,
    /// Total bytes.
    pub total: u64,
    /// Bytes available to unprivileged users.
    pub avail: u64,
    /// Free bytes (including reserved blocks).
    pub free: u64,
}

impl FsUsage {
    /// Bytes used.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
    /// Percentage used, as `df` computes it (used / (used + avail)).
    pub fn used_pct(&self) -> f32 {
        let denom = self.used() + self.avail;
        if denom == 0 {
            0.0
        } else {
            pct(self.used() as f64 * 100.0 / denom as f64)
        }
    }
}

/// Filesystem types worth reporting (real storage, not pseudo filesystems).
const REAL_FS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "f2fs", "zfs", "overlay", "9p", "virtiofs",
];

/// Parses `/proc/mounts` into (device, mount point, fstype) of real filesystems, first
/// mount of each mount point only.
pub fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 3 || !REAL_FS.contains(&f[2]) {
            continue;
        }
        let mount = unescape_mount(f[1]);
        if seen.insert(mount.clone()) {
            out.push((f[0].to_string(), mount, f[2].to_string()));
        }
    }
    out
}

/// Undoes the octal escapes (`\040` for space) in `/proc/mounts` fields.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `statvfs(3)` on a path.
pub fn statvfs(path: &Path) -> Result<(u64, u64, u64), SampleError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| perr("statvfs path", e.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a zeroed out-parameter of the
    // right type; statvfs writes only into it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(SampleError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    let frsize = st.f_frsize as u64;
    Ok((
        (st.f_blocks as u64).saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
        (st.f_bfree as u64).saturating_mul(frsize),
    ))
}

/// Disk I/O rates of one device between two samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskRate {
    /// Device name.
    pub name: String,
    /// Bytes read per second.
    pub read_bps: f64,
    /// Bytes written per second.
    pub write_bps: f64,
    /// Read operations per second.
    pub read_iops: f64,
    /// Write operations per second.
    pub write_iops: f64,
    /// Percent of the interval the device was busy.
    pub util_pct: f32,
}

/// Network rates of one interface between two samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetRate {
    /// Interface name.
    pub iface: String,
    /// Bytes received per second.
    pub rx_bps: f64,
    /// Bytes sent per second.
    pub tx_bps: f64,
    /// Total bytes received.
    pub rx_total: u64,
    /// Total bytes sent.
    pub tx_total: u64,
}

/// One resource sample: instantaneous values and rates since the previous sample
/// (zero rates on the first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// CPU busy percent over all cores.
    pub cpu_pct: f32,
    /// CPU busy percent per core.
    pub cores_pct: Vec<f32>,
    /// Memory.
    pub mem: MemInfo,
    /// Load averages.
    pub load: LoadAvg,
    /// Disk I/O per whole device (partitions, loop and ram devices left out).
    pub disks: Vec<DiskRate>,
    /// Network rates per interface (loopback included, last).
    pub nets: Vec<NetRate>,
    /// Usage of mounted real filesystems.
    pub filesystems: Vec<FsUsage>,
    /// Seconds the machine has been up.
    pub uptime_secs: u64,
    /// IP addresses (`iface addr/prefix`, see [`addresses`]); empty for fixture roots.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone)]
struct Raw {
    at: Instant,
    cpu: CpuStat,
    disks: HashMap<String, DiskCounters>,
    nets: HashMap<String, NetCounters>,
}

/// Reads procfs and computes rates between successive calls to [`Sampler::sample`].
#[derive(Debug)]
pub struct Sampler {
    proc_root: PathBuf,
    sys_block: Option<PathBuf>,
    with_filesystems: bool,
    prev: Option<Raw>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// A sampler of the running system (`/proc`, `/sys/block`, mounted filesystems).
    pub fn new() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_block: Some(PathBuf::from("/sys/block")),
            with_filesystems: true,
            prev: None,
        }
    }

    /// A sampler reading a copy of procfs under `root` (for tests): no filesystem usage and
    /// every disk in diskstats except loop/ram devices.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: root.into(),
            sys_block: None,
            with_filesystems: false,
            prev: None,
        }
    }

    fn read(&self, rel: &str) -> Result<String, SampleError> {
        let path = self.proc_root.join(rel);
        std::fs::read_to_string(&path).map_err(|source| SampleError::Read { path, source })
    }

    fn whole_disk(&self, name: &str) -> bool {
        if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
            return false;
        }
        match &self.sys_block {
            Some(dir) => dir.join(name).exists(),
            None => true,
        }
    }

    /// Takes one sample. Disk and network rates are per second over the time since the
    /// previous call.
    pub fn sample(&mut self) -> Result<Sample, SampleError> {
        self.sample_at(Instant::now())
    }

    /// [`Sampler::sample`] with an explicit clock (for tests).
    pub fn sample_at(&mut self, now: Instant) -> Result<Sample, SampleError> {
        let cpu = parse_stat(&self.read("stat")?)?;
        let mem = parse_meminfo(&self.read("meminfo")?)?;
        let load = parse_loadavg(&self.read("loadavg")?)?;
        let disks: Vec<DiskCounters> =
            parse_diskstats(&self.read("diskstats").unwrap_or_default())?
                .into_iter()
                .filter(|d| self.whole_disk(&d.name))
                .collect();
        let nets = parse_net_dev(&self.read("net/dev").unwrap_or_default())?;
        let uptime_secs = self
            .read("uptime")
            .ok()
            .and_then(|s| {
                s.split_ascii_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .map(whole_secs)
            .unwrap_or(0);

        let prev = self.prev.as_ref();
        let secs = prev
            .map(|p| now.saturating_duration_since(p.at).as_secs_f64())
            .unwrap_or(0.0);
        let rate = |cur: u64, old: Option<u64>| -> f64 {
            match old {
                Some(o) if secs > 0.0 => cur.saturating_sub(o) as f64 / secs,
                _ => 0.0,
            }
        };

        let cpu_pct = prev
            .map(|p| cpu.total.busy_pct_since(&p.cpu.total))
            .unwrap_or(0.0);
        let cores_pct = cpu
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| {
                prev.and_then(|p| p.cpu.cores.get(i))
                    .map(|o| c.busy_pct_since(o))
                    .unwrap_or(0.0)
            })
            .collect();

        let disk_rates = disks
            .iter()
            .map(|d| {
                let o = prev.and_then(|p| p.disks.get(&d.name));
                let util = rate(d.io_ms, o.map(|o| o.io_ms)) / 10.0;
                DiskRate {
                    name: d.name.clone(),
                    read_bps: rate(d.sectors_read, o.map(|o| o.sectors_read)) * 512.0,
                    write_bps: rate(d.sectors_written, o.map(|o| o.sectors_written)) * 512.0,
                    read_iops: rate(d.reads, o.map(|o| o.reads)),
                    write_iops: rate(d.writes, o.map(|o| o.writes)),
                    util_pct: pct(util),
                }
            })
            .collect();

        let mut net_rates: Vec<NetRate> = nets
            .iter()
            .map(|n| {
                let o = prev.and_then(|p| p.nets.get(&n.iface));
                NetRate {
                    iface: n.iface.clone(),
                    rx_bps: rate(n.rx_bytes, o.map(|o| o.rx_bytes)),
                    tx_bps: rate(n.tx_bytes, o.map(|o| o.tx_bytes)),
                    rx_total: n.rx_bytes,
                    tx_total: n.tx_bytes,
                }
            })
            .collect();
        net_rates.sort_by_key(|n| (n.iface == "lo", n.iface.clone()));

        let (filesystems, addrs) = if self.with_filesystems {
            (
                filesystems(&self.read("mounts").unwrap_or_default()),
                addresses(),
            )
        } else {
            (Vec::new(), Vec::new())
        };

        self.prev = Some(Raw {
            at: now,
            cpu,
            disks: disks.into_iter().map(|d| (d.name.clone(), d)).collect(),
            nets: nets.into_iter().map(|n| (n.iface.clone(), n)).collect(),
        });

        Ok(Sample {
            cpu_pct,
            cores_pct,
            mem,
            load,
            disks: disk_rates,
            nets: net_rates,
            filesystems,
            uptime_secs,
            addresses: addrs,
        })
    }
}

/// Usage of the real filesystems listed in a `/proc/mounts` text (unreadable ones skipped).
pub fn filesystems(mounts: &str) -> Vec<FsUsage> {
    parse_mounts(mounts)
        .into_iter()
        .filter_map(|(device, mount, fstype)| {
            let (total, avail, free) = statvfs(Path::new(&mount)).ok()?;
            Some(FsUsage {
                mount,
                device,
                fstype,
                total,
                avail,
                free,
            })
        })
        .collect()
}

/// The machine's IP addresses as `iface addr/prefix`, loopback and link-local IPv6 left out,
/// from `getifaddrs(3)`. Empty if the call fails.
pub fn addresses() -> Vec<String> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is non-null and points to a sockaddr owned by the list (alive until
        // freeifaddrs); every sockaddr starts with its family. The family tells which sockaddr
        // type it is, and ifa_netmask (when non-null) has the same family.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let text = if family == libc::AF_INET {
            // SAFETY: the family is AF_INET, so ifa_addr points to a sockaddr_in allocated
            // (and aligned) by getifaddrs, alive until freeifaddrs.
            let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            let prefix = if ifa.ifa_netmask.is_null() {
                32
            } else {
                // SAFETY: ifa_netmask is non-null and has ifa_addr's family (AF_INET), so it
                // points to a sockaddr_in owned by the list.
                let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
                u32::from_be(m.sin_addr.s_addr).count_ones()
            };
            if ip.is_loopback() {
                continue;
            }
            format!("{ip}/{prefix}")
        } else if family == libc::AF_INET6 {
            // SAFETY: the family is AF_INET6, so ifa_addr points to a sockaddr_in6 allocated
            // (and aligned) by getifaddrs, alive until freeifaddrs.
            let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let prefix = if ifa.ifa_netmask.is_null() {
                128
            } else {
                // SAFETY: ifa_netmask is non-null and has ifa_addr's family (AF_INET6), so it
                // points to a sockaddr_in6 owned by the list.
                let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in6) };
                m.sin6_addr
                    .s6_addr
                    .iter()
                    .map(|b| b.count_ones())
                    .sum::<u32>()
            };
            let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
            if ip.is_loopback() || link_local {
                continue;
            }
            format!("{ip}/{prefix}")
        } else {
            continue;
        };
        out.push(format!("{name} {text}"));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const STAT1: &str = "cpu  100 0 50 800 50 0 0 0 0 0\n\
cpu0 50 0 25 400 25 0 0 0 0 0\n\
cpu1 50 0 25 400 25 0 0 0 0 0\n\
intr 1 2 3\nctxt 5\n";
    const STAT2: &str = "cpu  200 0 100 850 50 0 0 0 0 0\n\
cpu0 150 0 75 400 25 0 0 0 0 0\n\
cpu1 50 0 25 450 25 0 0 0 0 0\n";

    #[test]
    fn stat_parses_and_computes_busy() {
        let a = parse_stat(STAT1).unwrap();
        let b = parse_stat(STAT2).unwrap();
        assert_eq!(a.cores.len(), 2);
        assert_eq!(a.total.user, 100);
        assert_eq!(a.total.system, 50);
        // total delta 200 ticks, busy delta 150 -> 75%
        assert!((b.total.busy_pct_since(&a.total) - 75.0).abs() < 0.01);
        assert!((b.cores[0].busy_pct_since(&a.cores[0]) - 100.0).abs() < 0.01);
        assert!(b.cores[1].busy_pct_since(&a.cores[1]).abs() < 0.01);
        assert!(parse_stat("intr 1\n").is_err());
        assert!(parse_stat("cpu 1 x 3 4\n").is_err());
    }

    #[test]
    fn meminfo_parses_and_falls_back_without_available() {
        let m = parse_meminfo(
            "MemTotal:  1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\nBuffers: 10 kB\nCached: 100 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .unwrap();
        assert_eq!(m.total, 1_024_000);
        assert_eq!(m.used(), 400 * 1024);
        assert!((m.used_pct() - 40.0).abs() < 0.01);
        let old =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 200 kB\nBuffers: 100 kB\nCached: 100 kB\n")
                .unwrap();
        assert_eq!(old.available, 400 * 1024);
        assert!(parse_meminfo("Foo: 1 kB\n").is_err());
    }

    #[test]
    fn loadavg_parses() {
        let l = parse_loadavg("0.52 0.58 0.59 3/467 12345\n").unwrap();
        assert!((l.one - 0.52).abs() < 1e-6);
        assert_eq!((l.running, l.tasks), (3, 467));
        assert!(parse_loadavg("x").is_err());
    }

    #[test]
    fn diskstats_and_net_dev_parse() {
        let d = parse_diskstats(
            "   8       0 sda 100 0 2000 10 50 0 4000 20 0 300 30 0 0 0 0\n   8       1 sda1 1 0 2 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "sda");
        assert_eq!(d[0].sectors_read, 2000);
        assert_eq!(d[0].sectors_written, 4000);
        assert_eq!(d[0].io_ms, 300);
        let n = parse_net_dev(
            "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  eth0: 5000 50 1 0 0 0 0 0 7000 70 2 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].iface, "eth0");
        assert_eq!(
            (n[1].rx_bytes, n[1].tx_bytes, n[1].rx_errs, n[1].tx_errs),
            (5000, 7000, 1, 2)
        );
    }

    #[test]
    fn mounts_keep_real_filesystems_and_unescape() {
        let m = parse_mounts(
            "proc /proc proc rw 0 0\n/dev/vda1 / ext4 rw 0 0\n/dev/vdb1 /mnt/my\\040disk ext4 rw 0 0\n/dev/vda1 / ext4 rw 0 0\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].1, "/mnt/my disk");
        let u = FsUsage {
            total: 100,
            free: 20,
            avail: 10,
            ..Default::default()
        };
        assert_eq!(u.used(), 80);
        assert!((u.used_pct() - 88.888_89).abs() < 0.01);
    }

    #[test]
    fn sampler_computes_rates_from_fixture_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("net")).unwrap();
        let write = |stat: &str, sectors: u64, rx: u64| {
            std::fs::write(root.join("stat"), stat).unwrap();
            std::fs::write(
                root.join("meminfo"),
                "MemTotal: 1000 kB\nMemAvailable: 500 kB\n",
            )
            .unwrap();
            std::fs::write(root.join("loadavg"), "1.00 0.50 0.25 1/100 1\n").unwrap();
            std::fs::write(
                root.join("diskstats"),
                format!("8 0 vda 10 0 {sectors} 0 10 0 {sectors} 0 0 500 0\n7 0 loop0 1 0 1 0 1 0 1 0 0 1 0\n"),
            )
            .unwrap();
            std::fs::write(
                root.join("net/dev"),
                format!("h\nh\n eth0: {rx} 1 0 0 0 0 0 0 {rx} 1 0 0 0 0 0 0\n lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
            )
            .unwrap();
        };
        let mut s = Sampler::with_root(root);
        let t0 = Instant::now();
        write(STAT1, 0, 0);
        let first = s.sample_at(t0).unwrap();
        assert_eq!(first.cores_pct, vec![0.0, 0.0]);
        assert_eq!(first.disks.len(), 1, "loop devices are left out");
        assert_eq!(first.disks[0].read_bps, 0.0);
        write(STAT2, 2048, 4096);
        let second = s.sample_at(t0 + Duration::from_secs(2)).unwrap();
        assert!((second.cpu_pct - 75.0).abs() < 0.01);
        assert!((second.cores_pct[0] - 100.0).abs() < 0.01);
        assert!((second.disks[0].read_bps - 2048.0 * 512.0 / 2.0).abs() < 0.01);
        assert_eq!(second.nets[0].iface, "eth0");
        assert_eq!(second.nets[1].iface, "lo", "loopback sorts last");
        assert!((second.nets[0].rx_bps - 2048.0).abs() < 0.01);
        assert_eq!(second.mem.used(), 500 * 1024);
    }

    #[test]
    fn addresses_leave_out_loopback() {
        let a = addresses();
        assert!(a
            .iter()
            .all(|x| !x.contains("127.0.0.1") && !x.ends_with("::1/128")));
        assert!(a.iter().all(|x| x.contains('/')), "{a:?}");
    }

    #[test]
    fn live_system_samples() {
        let mut s = Sampler::new();
        let a = s.sample().unwrap();
        assert!(!a.cores_pct.is_empty());
        assert!(a.mem.total > 0);
    }
}
