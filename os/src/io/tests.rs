//! Tests of the I/O service: round trips on both backends, concurrency on io_uring, EOF and
//! error behaviour, shutdown, and the fallback when a seccomp filter refuses io_uring_setup.

use super::*;
use std::fs::OpenOptions;
use std::time::{Duration, Instant};

fn open(dir: &tempfile::TempDir, name: &str) -> Arc<File> {
    Arc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join(name))
            .unwrap(),
    )
}

// The pattern repeats every 256 bytes: truncating the index to u8 is the point.
#[allow(clippy::cast_possible_truncation)]
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// True unless the environment refuses io_uring; under CI=true refusal is a failure.
fn uring_expected(io: &IoService) -> bool {
    if io.backend() == Backend::IoUring {
        return true;
    }
    let ci = std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    let forced = std::env::var("AERGO_IO")
        .map(|v| v == "std")
        .unwrap_or(false);
    assert!(
        !ci || forced,
        "io_uring unavailable under CI: {:?}",
        io.fallback_reason()
    );
    eprintln!(
        "NOTE: io_uring unavailable here ({:?}); io_uring-specific checks reported, not run",
        io.fallback_reason()
    );
    false
}

async fn round_trip(io: &IoService) {
    let dir = tempfile::tempdir().unwrap();
    let f = open(&dir, "a");
    let data = pattern(1 << 20, 7);
    io.write_at(&f, 4096, data.clone()).await.unwrap();
    io.fsync(&f).await.unwrap();
    let back = io.read_at(&f, 4096, data.len()).await.unwrap();
    assert_eq!(back, data);
    // Hole before the data reads as zeros.
    assert_eq!(io.read_at(&f, 0, 4096).await.unwrap(), vec![0u8; 4096]);
    // Reads past EOF are short, at EOF empty.
    let end = 4096 + data.len() as u64;
    let tail = io.read_at(&f, end - 10, 100).await.unwrap();
    assert_eq!(tail, data[data.len() - 10..]);
    assert!(io.read_at(&f, end + 5, 10).await.unwrap().is_empty());
    // Zero-length operations.
    io.write_at(&f, 0, Vec::new()).await.unwrap();
    assert!(io.read_at(&f, 0, 0).await.unwrap().is_empty());
    // Blocking forms from a blocking context.
    let (io2, f2) = (io.clone(), f.clone());
    let got = tokio::task::spawn_blocking(move || {
        io2.write_at_blocking(&f2, 0, b"hello".to_vec())?;
        io2.fsync_blocking(&f2)?;
        io2.read_at_blocking(&f2, 0, 5)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got, b"hello");
    let st = io.stats();
    assert!(st.completed >= 8, "{st:?}");
    assert_eq!(st.in_flight, 0, "{st:?}");
    assert_eq!(st.submitted, st.completed, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_io_uring() {
    let io = IoService::start(IoConfig::default());
    if uring_expected(&io) {
        assert_eq!(io.backend(), Backend::IoUring);
        assert!(io.fallback_reason().is_none());
    }
    round_trip(&io).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_std() {
    let io = IoService::start(IoConfig {
        force_std: true,
        ..IoConfig::default()
    });
    assert_eq!(io.backend(), Backend::Std);
    assert_eq!(io.backend().to_string(), "std");
    assert!(io.fallback_reason().unwrap().contains("forced"));
    round_trip(&io).await;
}

#[test]
fn backend_display_and_stats_serialize() {
    assert_eq!(Backend::IoUring.to_string(), "io_uring");
    let io = IoService::start(IoConfig {
        force_std: true,
        queue_depth: 4,
    });
    let v = serde_json::to_value(io.stats()).unwrap();
    assert_eq!(v["backend"], "std");
    assert_eq!(v["submitted"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ops_in_flight_on_io_uring() {
    let io = IoService::start(IoConfig {
        force_std: false,
        queue_depth: 8, // smaller than the batch: exercises the pending queue
    });
    if !uring_expected(&io) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = open(&dir, "c");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut round = 0u8;
    while io.stats().max_in_flight <= 1 {
        assert!(
            Instant::now() < deadline,
            "never saw 2 ops in flight: {:?}",
            io.stats()
        );
        let mut set = tokio::task::JoinSet::new();
        for i in 0..64u64 {
            let (io, f) = (io.clone(), f.clone());
            set.spawn(async move {
                let d = pattern(8192, u8::try_from(i).unwrap() ^ round);
                io.write_at(&f, i * 8192, d.clone()).await?;
                io.fsync(&f).await?;
                let back = io.read_at(&f, i * 8192, 8192).await?;
                Ok::<bool, IoError>(back == d)
            });
        }
        while let Some(r) = set.join_next().await {
            assert!(r.unwrap().unwrap(), "data mismatch");
        }
        round = round.wrapping_add(1);
    }
    let st = io.stats();
    assert!(st.max_in_flight > 1 && st.max_in_flight <= 8, "{st:?}");
    assert_eq!(st.in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_reported_not_panics() {
    for force_std in [false, true] {
        let io = IoService::start(IoConfig {
            force_std,
            queue_depth: 4,
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"abc").unwrap();
        let ro = Arc::new(File::open(&path).unwrap());
        let err = io.write_at(&ro, 0, b"x".to_vec()).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        let wo = Arc::new(OpenOptions::new().write(true).open(&path).unwrap());
        let err = io.read_at(&wo, 0, 3).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        assert!(matches!(
            io.read_at(&ro, 0, usize::MAX).await,
            Err(IoError::TooLarge(_))
        ));
        // The service still works after errors.
        assert_eq!(io.read_at(&ro, 1, 10).await.unwrap(), b"bc");
    }
}

#[test]
fn drop_stops_thread_and_outstanding_ops_finish() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(&dir, "d");
    let io = IoService::start(IoConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Futures dropped before completion must not leave the kernel writing into freed memory:
    // start writes and drop the futures at once, then drop the service.
    rt.block_on(async {
        for i in 0..32u64 {
            let fut = io.write_at(&f, i * 4096, pattern(4096, u8::try_from(i).unwrap()));
            tokio::pin!(fut);
            let _ = futures_poll_once(fut.as_mut()).await;
        }
    });
    let io2 = io.clone();
    drop(io);
    io2.write_at_blocking(&f, 0, b"xyz".to_vec()).unwrap();
    drop(io2); // joins the ring thread
    assert_eq!(&std::fs::read(dir.path().join("d")).unwrap()[..3], b"xyz");
}

/// Polls a future once (so its request is sent) and returns whether it finished.
async fn futures_poll_once<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| {
        let ready = fut
            .as_mut()
            .map(|f| f.as_mut().poll(cx).is_ready())
            .unwrap_or(true);
        std::task::Poll::Ready(ready)
    })
    .await
}

const SECCOMP_CHILD: &str = "AERGO_IO_TEST_SECCOMP_CHILD";

/// Installs a seccomp filter on this thread that makes io_uring_setup fail with EPERM.
#[cfg(target_arch = "x86_64")]
fn refuse_io_uring_setup() {
    // Classic BPF: load arch, check x86_64; load nr, if io_uring_setup return ERRNO(EPERM).
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const BPF_RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = [
        f(BPF_LD_W_ABS, 0, 0, 4),
        f(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        f(BPF_RET_K, 0, 0, RET_ALLOW),
        f(BPF_LD_W_ABS, 0, 0, 0),
        f(
            BPF_JMP_JEQ_K,
            0,
            1,
            u32::try_from(libc::SYS_io_uring_setup).unwrap(),
        ),
        f(BPF_RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        f(BPF_RET_K, 0, 0, RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).unwrap(),
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with valid arguments; fprog outlives the calls.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Re-executes this test binary running only this test, with an env var telling the child to
/// install a seccomp filter refusing io_uring_setup; the child asserts the std fallback.
#[cfg(target_arch = "x86_64")]
#[test]
fn falls_back_to_std_when_io_uring_setup_is_refused() {
    if std::env::var_os(SECCOMP_CHILD).is_some() {
        refuse_io_uring_setup();
        // io_uring_setup is now refused for this thread (and threads it creates).
        let raw = io_uring::IoUring::new(8);
        assert_eq!(raw.err().and_then(|e| e.raw_os_error()), Some(libc::EPERM));
        let io = IoService::start(IoConfig::default());
        assert_eq!(io.backend(), Backend::Std);
        let reason = io.fallback_reason().unwrap();
        assert!(reason.contains("io_uring unavailable"), "{reason}");
        let dir = tempfile::tempdir().unwrap();
        let f = open(&dir, "s");
        io.write_at_blocking(&f, 10, b"fallback".to_vec()).unwrap();
        io.fsync_blocking(&f).unwrap();
        assert_eq!(io.read_at_blocking(&f, 10, 100).unwrap(), b"fallback");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            io.write_at(&f, 0, b"async".to_vec()).await.unwrap();
            assert_eq!(io.read_at(&f, 0, 5).await.unwrap(), b"async");
        });
        assert_eq!(io.stats().backend, Backend::Std);
        println!("SECCOMP-CHILD-OK");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "io::tests::falls_back_to_std_when_io_uring_setup_is_refused",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SECCOMP_CHILD, "1")
        .env_remove("AERGO_IO")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("SECCOMP-CHILD-OK"),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reads_on_both_backends() {
    use std::os::unix::fs::OpenOptionsExt;
    // O_DIRECT needs a filesystem that supports it (not tmpfs): use the target dir's.
    let base = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir_in(base.parent().unwrap()).unwrap();
    let path = dir.path().join("direct");
    let data = pattern(3 * 4096 + 100, 3);
    std::fs::write(&path, &data).unwrap();
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
    {
        Ok(f) => Arc::new(f),
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "O_DIRECT unsupported under CI: {e}");
            eprintln!("NOTE: O_DIRECT unsupported here ({e}); direct-read checks not run");
            return;
        }
    };
    for force_std in [false, true] {
        let io = IoService::start(IoConfig {
            force_std,
            queue_depth: 8,
        });
        let got = io.read_at_direct(&f, 4096, 8192).await.unwrap();
        assert_eq!(got, data[4096..4096 + 8192]);
        // At EOF the read is short.
        let got = io.read_at_direct(&f, 8192, 8192).await.unwrap();
        assert_eq!(got, data[8192..]);
        let f2 = f.clone();
        let io2 = io.clone();
        let got = tokio::task::spawn_blocking(move || io2.read_at_direct_blocking(&f2, 0, 4096))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, data[..4096]);
        assert!(matches!(
            io.read_at_direct(&f, 100, 4096).await,
            Err(IoError::Unaligned { .. })
        ));
        assert!(matches!(
            io.read_at_direct(&f, 0, 100).await,
            Err(IoError::Unaligned { .. })
        ));
    }
}

/// A file on a filesystem with O_DIRECT support (the target dir's), or `None` (reported).
fn direct_file(data: &[u8]) -> Option<(tempfile::TempDir, Arc<File>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let base = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir_in(base.parent().unwrap()).unwrap();
    let path = dir.path().join("direct");
    std::fs::write(&path, data).unwrap();
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
    {
        Ok(f) => Some((dir, Arc::new(f))),
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "O_DIRECT unsupported under CI: {e}");
            eprintln!("NOTE: O_DIRECT unsupported here ({e}); direct-read checks not run");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_thread_reads_many_in_flight_and_dropped() {
    let io = IoService::start(IoConfig {
        force_std: false,
        queue_depth: 32,
    });
    if !uring_expected(&io) {
        return;
    }
    let data = pattern(256 * 4096, 9);
    let Some((_dir, direct)) = direct_file(&data) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plain = open(&dir, "plain");
    io.write_at(&plain, 0, data.clone()).await.unwrap();
    let data = Arc::new(data);
    // Many tasks, more reads than the queue depth, direct and through the page cache.
    let mut set = tokio::task::JoinSet::new();
    for t in 0..64u64 {
        let (io, direct, plain, data) = (io.clone(), direct.clone(), plain.clone(), data.clone());
        set.spawn(async move {
            for i in 0..16u64 {
                let page = (t * 7 + i * 13) % 255;
                let off = page * 4096;
                let at = usize::try_from(off).unwrap();
                let got = io.read_direct(&direct, off, 8192).await.unwrap();
                assert_eq!(got.as_ptr() as usize % DIRECT_ALIGN, 0);
                assert_eq!(&got[..], &data[at..at + 8192]);
                let got = io.read_at(&plain, off + 100, 5000).await.unwrap();
                assert_eq!(got, data[at + 100..at + 5100]);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    // Futures dropped while their reads are in the kernel: the ring keeps the buffers until
    // the completions arrive, and the service goes on working.
    for i in 0..64u64 {
        let fut = io.read_direct(&direct, (i % 250) * 4096, 4 * 4096);
        tokio::pin!(fut);
        let _ = futures_poll_once(fut.as_mut()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while io.stats().in_flight > 0 {
        assert!(
            Instant::now() < deadline,
            "reads never finished: {:?}",
            io.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = io.read_at_direct(&direct, 0, 4096).await.unwrap();
    assert_eq!(got, data[..4096]);
    let st = io.stats();
    assert_eq!(st.in_flight, 0, "{st:?}");
    assert_eq!(st.submitted, st.completed, "{st:?}");
    assert!(st.max_in_flight <= 32, "{st:?}");
    // Reads ran on the workers' own rings (the rest waited for budget on the ring thread).
    // How many depends on scheduling — about half here on a quiet machine, 929 of 2,114 once
    // under a full test run's load — so the floor is a quarter: a broken caller-thread path
    // gives none.
    assert!(st.caller_thread_reads > st.submitted / 4, "{st:?}");
}

#[test]
fn blocking_reads_on_the_private_ring() {
    let io = IoService::start(IoConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let f = open(&dir, "p");
    let data = pattern(100_000, 4);
    io.write_at_blocking(&f, 0, data.clone()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8usize {
            let (io, f, data) = (&io, &f, &data);
            s.spawn(move || {
                for i in 0..50usize {
                    let off = (t * 977 + i * 1231) % 90_000;
                    let got = io.read_at_blocking(f, off as u64, 10_000).unwrap();
                    assert_eq!(got, data[off..off + 10_000]);
                }
                // Short at end of file, empty past it.
                assert_eq!(io.read_at_blocking(f, 99_990, 100).unwrap(), data[99_990..]);
                assert!(io.read_at_blocking(f, 200_000, 10).unwrap().is_empty());
            });
        }
    });
    let path = dir.path().join("wo");
    std::fs::write(&path, b"abc").unwrap();
    let wo = Arc::new(OpenOptions::new().write(true).open(&path).unwrap());
    let err = io.read_at_blocking(&wo, 0, 3).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    assert_eq!(io.read_at_blocking(&f, 0, 3).unwrap(), data[..3]);
    let st = io.stats();
    assert_eq!((st.in_flight, st.submitted), (0, st.completed), "{st:?}");
    if io.backend() == Backend::IoUring {
        assert_eq!(st.caller_thread_reads, 8 * 52 + 2, "{st:?}");
    }
    if let Some((_d, direct)) = direct_file(&data) {
        let got = io.read_direct_blocking(&direct, 8192, 8192).unwrap();
        assert_eq!(&got[..], &data[8192..16384]);
        assert_eq!(got.as_ptr() as usize % DIRECT_ALIGN, 0);
        // The last page is short.
        let got = io.read_direct_blocking(&direct, 24 * 4096, 4096).unwrap();
        assert_eq!(&got[..], &data[24 * 4096..]);
    }
}

#[test]
fn reads_work_across_runtimes_and_without_an_io_driver() {
    let io = IoService::start(IoConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let f = open(&dir, "r");
    io.write_at_blocking(&f, 0, b"0123456789".to_vec()).unwrap();
    // The same thread under several runtimes in turn: each gets its own ring.
    for _ in 0..3 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(io.read_at(&f, 2, 3).await.unwrap(), b"234");
        });
    }
    let local = io.stats().caller_thread_reads;
    if io.backend() == Backend::IoUring {
        assert_eq!(local, 3);
    }
    // A runtime without the I/O driver cannot watch a ring's eventfd: the ring thread serves.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(io.read_at(&f, 5, 5).await.unwrap(), b"56789");
    });
    // Outside any runtime (a plain executor): the ring thread serves too.
    assert_eq!(block_on(io.read_at(&f, 0, 1)).unwrap(), b"0");
    assert_eq!(io.stats().caller_thread_reads, local);
    assert_eq!(io.stats().in_flight, 0);
}

/// A minimal executor outside tokio: polls on this thread, parks between wake-ups.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_thread_waits_for_budget_held_by_caller_thread_reads() {
    // Queue depth 1: caller-thread reads and ring-thread writes take turns with one unit of
    // budget; a write that found it taken must be woken when a read releases it.
    let io = IoService::start(IoConfig {
        force_std: false,
        queue_depth: 1,
    });
    if !uring_expected(&io) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = open(&dir, "q");
    io.write_at(&f, 0, pattern(65536, 1)).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..16u64 {
        let (io, f) = (io.clone(), f.clone());
        set.spawn(async move {
            for i in 0..50u64 {
                if (t + i) % 2 == 0 {
                    io.read_at(&f, (i * 512) % 60000, 512).await?;
                } else {
                    io.write_at(&f, 65536 + t * 4096 + i, vec![u8::try_from(t).unwrap()])
                        .await?;
                }
            }
            Ok::<(), IoError>(())
        });
    }
    let all = async {
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("operations stalled waiting for budget");
    let st = io.stats();
    assert_eq!((st.in_flight, st.max_in_flight), (0, 1), "{st:?}");
    assert_eq!(st.submitted, st.completed, "{st:?}");
}
