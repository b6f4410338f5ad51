//! `aergofs bench`: the storage engine against one file per blob and RocksDB on the same
//! filesystem, in-process (no HTTP), modelled on `weed benchmark`.
//!
//! Workload: N blobs of 1 KiB + 0–63 random bytes, C concurrent clients. AergoFS runs as async
//! tasks on the I/O service; the baselines run on C OS threads (their natural model). Phases:
//! writes then random reads for AergoFS group commit, AergoFS fast mode, file-per-blob and
//! RocksDB (WAL without sync); a durable subset (fsync per file, RocksDB `sync=true`) for the
//! group-commit comparison; then cold reads: AergoFS O_DIRECT reads of the 4 KiB windows holding
//! random needles vs raw aligned O_DIRECT `pread`s of the same windows of the same file.

use aergo_os::io::{IoConfig, IoService, DIRECT_ALIGN};
use aergofs::needle::Meta;
use aergofs::volume::{Durability, VolumeConfig};
use aergofs::{Fid, Store, StoreConfig};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Benchmark options.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Number of blobs.
    #[arg(long, default_value_t = 1_048_576)]
    pub n: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Scratch directory on the filesystem to measure (default: under /var/tmp); removed after.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Blobs in the durable subset (fsync per file / RocksDB sync) and in the cold-read sample.
    #[arg(long, default_value_t = 20_000)]
    pub sample: usize,
    /// Keep the scratch data.
    #[arg(long)]
    pub keep: bool,
    /// Also measure through the HTTP API (in-process server on 127.0.0.1, keep-alive
    /// connections), reported separately from the engine figures.
    #[arg(long)]
    pub http: bool,
    /// Only the cold-read comparison (writes the fast-mode store it reads, skips the other
    /// phases): for iterating on the O_DIRECT path.
    #[arg(long)]
    pub cold_only: bool,
}

struct Workload {
    sizes: Vec<u16>,
    offsets: Vec<u32>,
    pool: Vec<u8>,
}

impl Workload {
    fn new(n: usize) -> Workload {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xae90);
        let pool: Vec<u8> = (0..(4 << 20)).map(|_| rng.gen()).collect();
        let sizes = (0..n).map(|_| 1024 + rng.gen_range(0..64u16)).collect();
        let offsets = (0..n)
            .map(|_| rng.gen_range(0..u32::try_from(pool.len() - 2048).unwrap_or(u32::MAX)))
            .collect();
        Workload {
            sizes,
            offsets,
            pool,
        }
    }
    fn blob(&self, i: usize) -> &[u8] {
        let o = self.offsets[i] as usize;
        &self.pool[o..o + self.sizes[i] as usize]
    }
    fn bytes(&self) -> u64 {
        self.sizes.iter().map(|&s| s as u64).sum()
    }
}

/// Process resource use so far: CPU time (user + system, µs) and context switches
/// (voluntary + involuntary), all threads.
#[derive(Clone, Copy, Default)]
struct Usage {
    cpu_us: f64,
    switches: f64,
}

impl Usage {
    fn now() -> Usage {
        // SAFETY: getrusage fills the zeroed struct we pass; RUSAGE_SELF is always valid.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: see above.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return Usage::default();
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
        Usage {
            cpu_us: tv(ru.ru_utime) + tv(ru.ru_stime),
            switches: (ru.ru_nvcsw + ru.ru_nivcsw) as f64,
        }
    }
    fn since(self, before: Usage) -> Usage {
        Usage {
            cpu_us: self.cpu_us - before.cpu_us,
            switches: self.switches - before.switches,
        }
    }
}

/// Latencies of one phase, its wall time and the resources the process used meanwhile.
struct Run {
    lat_ns: Vec<u64>,
    secs: f64,
    used: Usage,
}

#[derive(Clone)]
struct Stat {
    label: String,
    ops: usize,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_op: f64,
    switches_per_op: f64,
}

impl Stat {
    fn of(label: &str, r: Run) -> Stat {
        let mut s = Stat::new(label, r.lat_ns, r.secs);
        let ops = s.ops.max(1) as f64;
        s.cpu_us_per_op = r.used.cpu_us / ops;
        s.switches_per_op = r.used.switches / ops;
        s
    }

    fn new(label: &str, mut lat_ns: Vec<u64>, secs: f64) -> Stat {
        lat_ns.sort_unstable();
        let pct = |p: f64| {
            if lat_ns.is_empty() {
                0.0
            } else {
                lat_ns[percentile_index(lat_ns.len(), p)] as f64 / 1000.0
            }
        };
        Stat {
            label: label.to_string(),
            ops: lat_ns.len(),
            secs,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            cpu_us_per_op: f64::NAN,
            switches_per_op: f64::NAN,
        }
    }
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
    fn print(&self) {
        println!(
            "| {:<34} | {:>9} | {:>12.0} | {:>9.1} | {:>9.1} | {:>9} | {:>9} |",
            self.label,
            self.ops,
            self.rate(),
            self.p50_us,
            self.p99_us,
            per_op(self.cpu_us_per_op, 1),
            per_op(self.switches_per_op, 2),
        );
        // Show progress as it happens even when stdout is a pipe.
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
}

/// A per-operation figure for the table (`-` when not measured).
/// Nanoseconds since `t` (saturating: u64 nanoseconds last 584 years).
fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The index of the `p` quantile (0..=1) in a sorted list of `len` > 0 samples.
// The float product is in 0..=len-1 (p <= 1), so the saturating float cast is exact enough.
#[allow(clippy::cast_possible_truncation)]
fn percentile_index(len: usize, p: f64) -> usize {
    ((len - 1) as f64 * p) as usize
}

fn per_op(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "-".to_string()
    } else {
        format!("{v:.decimals$}")
    }
}

/// A random permutation of `0..n` (or of a sample of it).
fn order(n: usize, take: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    v.truncate(take);
    v
}

/// Deals `idx` out to `c` clients round-robin, so the clients together walk the list in order
/// (as concurrent uploaders do with freshly assigned ids).
fn interleave(idx: &[usize], c: usize) -> Vec<Vec<usize>> {
    let c = c.max(1).min(idx.len().max(1));
    (0..c)
        .map(|t| idx.iter().skip(t).step_by(c).copied().collect())
        .collect()
}

/// Runs `f(i)` for every index on `c` OS threads, returning per-op latencies and elapsed secs.
fn threads<F>(idx: &[usize], c: usize, f: F) -> Result<Run>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    let (start, before) = (Instant::now(), Usage::now());
    let chunks = interleave(idx, c);
    let results: Vec<Result<Vec<u64>>> = std::thread::scope(|s| {
        let hs: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let f = &f;
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(chunk.len());
                    for &i in chunk.iter() {
                        let t = Instant::now();
                        f(i)?;
                        lat.push(elapsed_ns(t));
                    }
                    Ok(lat)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("bench thread panicked")))
            })
            .collect()
    });
    let (secs, used) = (start.elapsed().as_secs_f64(), Usage::now().since(before));
    let mut all = Vec::with_capacity(idx.len());
    for r in results {
        all.extend(r?);
    }
    Ok(Run {
        lat_ns: all,
        secs,
        used,
    })
}

/// Runs `f(i)` for every index on `c` tokio tasks.
async fn tasks<F, Fut>(idx: &[usize], c: usize, f: F) -> Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let (start, before) = (Instant::now(), Usage::now());
    let mut set = tokio::task::JoinSet::new();
    for chunk in interleave(idx, c) {
        let f = f.clone();
        set.spawn(async move {
            let mut lat = Vec::with_capacity(chunk.len());
            for i in chunk {
                let t = Instant::now();
                f(i).await?;
                lat.push(elapsed_ns(t));
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut all = Vec::with_capacity(idx.len());
    while let Some(r) = set.join_next().await {
        all.extend(r.context("bench task")??);
    }
    Ok(Run {
        lat_ns: all,
        secs: start.elapsed().as_secs_f64(),
        used: Usage::now().since(before),
    })
}

struct AergoRun {
    write: Stat,
    read: Stat,
    store: Arc<Store>,
    fids: Arc<Vec<Fid>>,
}

async fn aergofs(
    dir: &Path,
    label: &str,
    durability: Durability,
    w: &Arc<Workload>,
    c: usize,
    io: &IoService,
) -> Result<AergoRun> {
    let cfg = StoreConfig {
        volume: VolumeConfig {
            durability,
            ..VolumeConfig::default()
        },
        compaction_interval: None,
        ..StoreConfig::default()
    };
    let store = Store::open(dir, cfg, io.clone()).await?;
    let n = w.sizes.len();
    // Assign ids first (as clients do with /assign), then write concurrently.
    let mut fids = Vec::with_capacity(n);
    for _ in 0..n {
        fids.push(store.assign().await?);
    }
    let fids = Arc::new(fids);
    let all: Vec<usize> = (0..n).collect();
    let (s, f, wl) = (store.clone(), fids.clone(), w.clone());
    let run = tasks(&all, c, move |i| {
        let (s, f, wl) = (s.clone(), f.clone(), wl.clone());
        async move {
            s.write(f[i], wl.blob(i), &Meta::default()).await?;
            Ok(())
        }
    })
    .await?;
    let write = Stat::of(&format!("aergofs {label} write"), run);
    let rd = order(n, n, 1);
    let (s, f, wl) = (store.clone(), fids.clone(), w.clone());
    let run = tasks(&rd, c, move |i| {
        let (s, f, wl) = (s.clone(), f.clone(), wl.clone());
        async move {
            let got = s.read(f[i]).await?;
            if got.data().len() != wl.sizes[i] as usize {
                bail!("aergofs returned a wrong size for blob {i}");
            }
            Ok(())
        }
    })
    .await?;
    let read = Stat::of(&format!("aergofs {label} random read"), run);
    Ok(AergoRun {
        write,
        read,
        store,
        fids,
    })
}

fn file_path(root: &Path, i: usize) -> PathBuf {
    root.join(format!("{:02x}", i % 256)).join(format!("{i:x}"))
}

fn make_fanout(root: &Path) -> Result<()> {
    for d in 0..256 {
        std::fs::create_dir_all(root.join(format!("{d:02x}")))?;
    }
    Ok(())
}

/// Aligned scratch buffer for raw O_DIRECT reads.
struct Aligned {
    buf: Vec<u8>,
    pad: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let buf = vec![0u8; len + DIRECT_ALIGN];
        let pad = (DIRECT_ALIGN - buf.as_ptr() as usize % DIRECT_ALIGN) % DIRECT_ALIGN;
        Aligned { buf, pad }
    }
    fn slice(&mut self, len: usize) -> &mut [u8] {
        &mut self.buf[self.pad..self.pad + len]
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

/// Runs the benchmark and prints a report.
pub async fn run(a: BenchArgs) -> Result<()> {
    if a.n == 0 || a.concurrency == 0 {
        bail!("--n and --concurrency must be at least 1");
    }
    let root = match &a.dir {
        Some(d) => d.join(format!("aergofs-bench-{}", std::process::id())),
        None => PathBuf::from("/var/tmp").join(format!("aergofs-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    let r = run_in(&a, &root).await;
    if !a.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    r
}

async fn run_in(a: &BenchArgs, root: &Path) -> Result<()> {
    let (n, c) = (a.n, a.concurrency);
    let sample = a.sample.min(n).max(1);
    let w = Arc::new(Workload::new(n));
    let io = IoService::start(IoConfig::default());
    println!(
        "aergofs bench: n={n} blobs of 1024+0..63 B ({:.1} MiB), concurrency {c}, dir {}, io backend {}{}",
        w.bytes() as f64 / (1 << 20) as f64,
        root.display(),
        io.backend(),
        io.fallback_reason().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    println!(
        "| {:<34} | {:>9} | {:>12} | {:>9} | {:>9} | {:>9} | {:>9} |",
        "phase", "ops", "ops/s", "p50 µs", "p99 µs", "CPU µs/op", "csw/op"
    );
    println!(
        "|{:-<36}|{:->11}|{:->14}|{:->11}|{:->11}|{:->11}|{:->11}|",
        "", "", "", "", "", "", ""
    );

    if a.cold_only {
        let fast = aergofs(
            &root.join("aergofs-fast"),
            "fast",
            Durability::Fast,
            &w,
            c,
            &io,
        )
        .await?;
        fast.write.print();
        let (cold, raw) = cold_reads(&fast, sample, c).await?;
        println!();
        println!("I/O service: {:?}", io.stats());
        let r = ratio(cold.rate(), raw.rate());
        println!(
            "  {:<44} {r:>6.2}x  (floor 0.8x: {})",
            "cold reads / raw O_DIRECT reads",
            if r >= 0.8 { "met" } else { "NOT MET" }
        );
        return Ok(());
    }

    // AergoFS, both modes.
    let gc = aergofs(
        &root.join("aergofs-gc"),
        "group-commit",
        Durability::GroupCommit,
        &w,
        c,
        &io,
    )
    .await?;
    gc.write.print();
    gc.read.print();
    gc.store.close().await?;
    let gc_stats = (gc.write.clone(), gc.read.clone());
    drop(gc);
    let fast = aergofs(
        &root.join("aergofs-fast"),
        "fast",
        Durability::Fast,
        &w,
        c,
        &io,
    )
    .await?;
    fast.write.print();
    fast.read.print();
    let st = fast.store.stats();
    let ram_per_needle = st.index_bytes_per_live_needle;

    // One file per blob.
    let froot = root.join("files");
    make_fanout(&froot)?;
    let all: Vec<usize> = (0..n).collect();
    let run = threads(&all, c, |i| {
        std::fs::write(file_path(&froot, i), w.blob(i))?;
        Ok(())
    })?;
    let files_w = Stat::of("file-per-blob write", run);
    files_w.print();
    let rd = order(n, n, 1);
    let run = threads(&rd, c, |i| {
        let b = std::fs::read(file_path(&froot, i))?;
        if b.len() != w.sizes[i] as usize {
            bail!("file-per-blob returned a wrong size");
        }
        Ok(())
    })?;
    let files_r = Stat::of("file-per-blob random read", run);
    files_r.print();
    let sroot = root.join("files-sync");
    make_fanout(&sroot)?;
    let sub: Vec<usize> = (0..sample).collect();
    let run = threads(&sub, c, |i| {
        let mut f = std::fs::File::create(file_path(&sroot, i))?;
        std::io::Write::write_all(&mut f, w.blob(i))?;
        f.sync_data()?;
        Ok(())
    })?;
    let files_sync = Stat::of("file-per-blob write + fsync", run);
    files_sync.print();

    // RocksDB.
    let db = rocksdb::DB::open_default(root.join("rocksdb")).context("open RocksDB")?;
    let run = threads(&all, c, |i| {
        db.put((i as u64).to_be_bytes(), w.blob(i))?;
        Ok(())
    })?;
    let rocks_w = Stat::of("rocksdb put (WAL, no sync)", run);
    rocks_w.print();
    let run = threads(&rd, c, |i| match db.get((i as u64).to_be_bytes())? {
        Some(v) if v.len() == w.sizes[i] as usize => Ok(()),
        _ => bail!("rocksdb returned a wrong value"),
    })?;
    let rocks_r = Stat::of("rocksdb random get", run);
    rocks_r.print();
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let run = threads(&sub, c, |i| {
        db.put_opt((u64::MAX - i as u64).to_be_bytes(), w.blob(i), &sync)?;
        Ok(())
    })?;
    let rocks_sync = Stat::of("rocksdb put (sync=true)", run);
    rocks_sync.print();
    drop(db);

    let (cold, raw) = cold_reads(&fast, sample, c).await?;

    if a.http {
        let (hw, hr) = http_bench(&root.join("aergofs-http"), &w, c, &io).await?;
        hw.print();
        hr.print();
    }

    let (gw, gr) = gc_stats;
    println!();
    println!(
        "index RAM per live needle: {ram_per_needle:.2} B (in-memory index heap / live needles)"
    );
    println!("I/O service: {:?}", io.stats());
    println!();
    println!("ratios (AergoFS / baseline, higher is better for AergoFS):");
    let rows = [
        (
            "fast writes / file-per-blob writes",
            ratio(fast.write.rate(), files_w.rate()),
            Some(1.5),
        ),
        (
            "fast reads / file-per-blob reads",
            ratio(fast.read.rate(), files_r.rate()),
            Some(1.0),
        ),
        (
            "cold reads / raw O_DIRECT reads",
            ratio(cold.rate(), raw.rate()),
            Some(0.8),
        ),
        (
            "group-commit writes / file-per-blob+fsync",
            ratio(gw.rate(), files_sync.rate()),
            None,
        ),
        (
            "group-commit reads / file-per-blob reads",
            ratio(gr.rate(), files_r.rate()),
            None,
        ),
        (
            "fast writes / rocksdb puts",
            ratio(fast.write.rate(), rocks_w.rate()),
            None,
        ),
        (
            "fast reads / rocksdb gets",
            ratio(fast.read.rate(), rocks_r.rate()),
            None,
        ),
        (
            "group-commit writes / rocksdb sync puts",
            ratio(gw.rate(), rocks_sync.rate()),
            None,
        ),
    ];
    for (what, r, floor) in rows {
        match floor {
            Some(f) => println!(
                "  {what:<44} {r:>6.2}x  (floor {f}x: {})",
                if r >= f { "met" } else { "NOT MET" }
            ),
            None => println!("  {what:<44} {r:>6.2}x"),
        }
    }
    Ok(())
}

/// Cold reads: AergoFS O_DIRECT reads of `sample` random needles (async tasks) against raw
/// aligned O_DIRECT `pread`s of the same 4 KiB windows of the same file (OS threads), raw
/// measured before and after; returns the AergoFS figure and the better raw one.
async fn cold_reads(fast: &AergoRun, sample: usize, c: usize) -> Result<(Stat, Stat)> {
    let n = fast.fids.len();
    // Cold reads: AergoFS O_DIRECT vs raw O_DIRECT of the same windows. Flush first: an
    // O_DIRECT read of a range with dirty pages would wait for their writeback.
    fast.store.close().await?;
    let pick = order(n, sample, 2);
    let mut windows: Vec<(u32, u64, usize)> = Vec::with_capacity(pick.len());
    for &i in &pick {
        let f = fast.fids[i];
        let (off, len) = fast
            .store
            .locate(f)
            .context("benchmark needle missing from the index")?;
        let al = DIRECT_ALIGN as u64;
        let start = off / al * al;
        let end = (off + len as u64).div_ceil(al) * al;
        windows.push((f.volume, start, usize::try_from(end - start)?));
    }
    let vol_path = fast.store.volume_path(1);
    let raw_idx: Vec<usize> = (0..windows.len()).collect();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&vol_path)
        .with_context(|| format!("open {} with O_DIRECT", vol_path.display()))?;
    let raw_read = |k: usize| {
        let (_, start, len) = windows[k];
        let mut b = Aligned::new(len);
        // The last window may run past end of file: a short read there is fine.
        if file.read_at(b.slice(len), start)? == 0 {
            bail!("raw O_DIRECT read at {start} returned nothing");
        }
        Ok(())
    };
    let run = threads(&raw_idx, c, raw_read)?;
    let raw1 = Stat::of("raw O_DIRECT pread, same windows", run);
    raw1.print();
    let fids = fast.fids.clone();
    let s = fast.store.clone();
    let run = tasks(&pick, c, move |i| {
        let (s, fids) = (s.clone(), fids.clone());
        async move {
            s.read_direct(fids[i]).await?;
            Ok(())
        }
    })
    .await?;
    let cold = Stat::of("aergofs cold read (O_DIRECT)", run);
    cold.print();
    // The same engine path from C blocking callers (OS threads, no async runtime): shows how
    // much of the gap to raw is task scheduling. Informational; the ratio uses the async row.
    let run = threads(&pick, c, |i| {
        fast.store.read_direct_blocking(fast.fids[i])?;
        Ok(())
    })?;
    Stat::of("aergofs cold read, blocking callers", run).print();
    // Raw again after AergoFS; the better raw run is the reference.
    let run = threads(&raw_idx, c, raw_read)?;
    let raw2 = Stat::of("raw O_DIRECT pread, again", run);
    raw2.print();
    let raw = if raw2.rate() > raw1.rate() {
        raw2
    } else {
        raw1
    };
    fast.store.close().await?;
    Ok((cold, raw))
}

/// One keep-alive HTTP/1.1 connection (responses from the server always carry a length).
struct Conn {
    s: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Conn {
    async fn new(addr: std::net::SocketAddr) -> Result<Conn> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s: tokio::io::BufReader::new(s),
        })
    }

    async fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let w = self.s.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(body).await?;
        let mut line = String::new();
        self.s.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|x| x.parse().ok())
            .context("bad status line")?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.s.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().context("bad content-length")?;
                }
            }
        }
        let mut b = vec![0u8; len];
        self.s.read_exact(&mut b).await?;
        Ok((status, b))
    }
}

/// Uploads every blob with `POST /` and reads them back in random order with `GET /FID`.
async fn http_bench(
    dir: &Path,
    w: &Arc<Workload>,
    c: usize,
    io: &IoService,
) -> Result<(Stat, Stat)> {
    let cfg = StoreConfig {
        compaction_interval: None,
        ..StoreConfig::default()
    };
    let store = Store::open(dir, cfg, io.clone()).await?;
    let app = aergofs::http::router(
        store.clone(),
        aergofs::http::HttpConfig {
            token: None,
            read_policy: aergofs::http::ReadPolicy::Open,
            max_upload: 1 << 20,
            upload_memory: aergofs::http::DEFAULT_UPLOAD_MEMORY,
            upload_wait: aergofs::http::DEFAULT_UPLOAD_WAIT,
            public_url: String::new(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let n = w.sizes.len();
    let fids: Arc<Vec<parking_lot::Mutex<String>>> = Arc::new(
        (0..n)
            .map(|_| parking_lot::Mutex::new(String::new()))
            .collect(),
    );
    let mut stats = Vec::new();
    for phase in ["write", "read"] {
        let idx = if phase == "write" {
            (0..n).collect()
        } else {
            order(n, n, 3)
        };
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for chunk in interleave(&idx, c) {
            let (w, fids) = (w.clone(), fids.clone());
            set.spawn(async move {
                let mut conn = Conn::new(addr).await?;
                let mut lat = Vec::with_capacity(chunk.len());
                for i in chunk {
                    let t = Instant::now();
                    if phase == "write" {
                        let (st, body) = conn.call("POST", "/", w.blob(i)).await?;
                        if st != 201 {
                            bail!("HTTP upload: status {st}");
                        }
                        let v: serde_json::Value = serde_json::from_slice(&body)?;
                        *fids[i].lock() = v["fid"].as_str().unwrap_or_default().to_string();
                    } else {
                        let fid = fids[i].lock().clone();
                        let (st, body) = conn.call("GET", &format!("/{fid}"), b"").await?;
                        if st != 200 || body.len() != w.sizes[i] as usize {
                            bail!("HTTP read: status {st}");
                        }
                    }
                    lat.push(elapsed_ns(t));
                }
                Ok::<_, anyhow::Error>(lat)
            });
        }
        let mut all = Vec::with_capacity(n);
        while let Some(r) = set.join_next().await {
            all.extend(r.context("HTTP bench task")??);
        }
        let label = if phase == "write" {
            "HTTP POST / (group-commit)"
        } else {
            "HTTP GET /FID random"
        };
        stats.push(Stat::new(label, all, start.elapsed().as_secs_f64()));
    }
    server.abort();
    store.close().await?;
    let r = stats.pop().context("no read stats")?;
    let wr = stats.pop().context("no write stats")?;
    Ok((wr, r))
}
