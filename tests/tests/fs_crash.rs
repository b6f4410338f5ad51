//! AergoFS crash tests: SIGKILL the server at random points during concurrent writes and
//! deletes, and during compaction (also at each compaction commit step via failpoints), then
//! restart and check that every acknowledged needle reads back byte-identical and no
//! acknowledged deletion is undone. (SIGKILL keeps the page cache: this tests the protocol
//! and recovery, not fsync; the appliance's QEMU power-cut test covers that.)

mod fs_common;

use aergo_e2e::poll;
use fs_common::{bytes, Rng, Server};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct Ledger {
    /// Acknowledged uploads: fid → (seed, len).
    live: HashMap<String, (u64, usize)>,
    /// Acknowledged deletions.
    deleted: Vec<String>,
}

struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts `n` client threads uploading (and sometimes deleting) until stopped or the server dies.
fn start_load(addr: &str, ledger: &Arc<Mutex<Ledger>>, n: usize, seed: u64) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let threads = (0..n)
        .map(|t| {
            let (addr, ledger, stop, acks) =
                (addr.to_string(), ledger.clone(), stop.clone(), acks.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed * 1000 + t as u64 + 1);
                let mut mine: Vec<String> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if rng.below(5) == 0 && !mine.is_empty() {
                        let i = rng.below_usize(mine.len());
                        let fid = mine.swap_remove(i);
                        // Sent but unacknowledged deletes are ambiguous: forget the fid first.
                        let removed = ledger
                            .lock()
                            .map(|mut l| l.live.remove(&fid))
                            .ok()
                            .flatten();
                        match fs_common::request(&addr, "DELETE", &format!("/{fid}"), &[], b"") {
                            Ok(r) if r.status == 200 => {
                                if let Ok(mut l) = ledger.lock() {
                                    l.deleted.push(fid);
                                }
                            }
                            Ok(r) => panic!(
                                "delete {fid}: {} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ),
                            Err(_) => {
                                let _ = removed;
                                return;
                            }
                        }
                        continue;
                    }
                    let s = rng.next();
                    let len = match rng.below(20) {
                        0 => rng.below_usize(1 << 20),
                        1 => 0,
                        _ => rng.below_usize(16 << 10),
                    };
                    match fs_common::request(&addr, "POST", "/", &[], &bytes(s, len)) {
                        Ok(r) if r.status == 201 => {
                            let fid = match r.json() {
                                Ok(j) => j["fid"].as_str().unwrap_or_default().to_string(),
                                Err(_) => return,
                            };
                            if let Ok(mut l) = ledger.lock() {
                                l.live.insert(fid.clone(), (s, len));
                            }
                            mine.push(fid);
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => {
                            panic!("upload: {} {}", r.status, String::from_utf8_lossy(&r.body))
                        }
                        Err(_) => return, // server gone
                    }
                }
            })
        })
        .collect();
    Load {
        stop,
        acks,
        threads,
    }
}

impl Load {
    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
    }
}

fn verify(srv: &Server, ledger: &Ledger, what: &str) -> anyhow::Result<()> {
    for (fid, &(seed, len)) in &ledger.live {
        let r = srv.get(fid)?;
        assert_eq!(
            r.status,
            200,
            "{what}: acknowledged {fid} lost: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.body == bytes(seed, len), "{what}: {fid} differs");
    }
    for fid in &ledger.deleted {
        assert_eq!(
            srv.get(fid)?.status,
            404,
            "{what}: deleted {fid} reappeared"
        );
    }
    Ok(())
}

fn iterations(default: usize) -> usize {
    std::env::var("AERGOFS_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn sigkill_during_concurrent_writes_loses_no_acknowledged_needle() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng(7);
    for it in 0..iterations(10) {
        let mut srv = Server::start(dir.path(), &["--compaction-interval", "0"], &[])?;
        {
            let l = ledger.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            verify(&srv, &l, &format!("iteration {it} start"))?;
        }
        let load = start_load(&srv.addr, &ledger, 8, it as u64 + 1);
        let target = 20 + rng.below(150);
        poll("acknowledged uploads", Duration::from_secs(120), || {
            Ok((load.acks.load(Ordering::SeqCst) >= target).then_some(()))
        })?;
        srv.proc.signal(libc::SIGKILL);
        srv.proc.wait_timeout(Duration::from_secs(30))?;
        load.finish();
    }
    let srv = Server::start(dir.path(), &[], &[])?;
    let l = ledger.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    verify(&srv, &l, "final")?;
    assert!(
        l.live.len() > 100,
        "too little was written: {}",
        l.live.len()
    );
    // Uploads whose answer was cut by the kill may exist too; never fewer than acknowledged.
    let live = srv.status()?["live_needles"].as_u64().unwrap_or(0);
    assert!(
        live >= l.live.len() as u64,
        "{live} live < {} acknowledged",
        l.live.len()
    );
    Ok(())
}

fn volume_stat(srv: &Server, key: &str) -> anyhow::Result<serde_json::Value> {
    Ok(srv.status()?["volumes"][0][key].clone())
}

#[test]
fn sigkill_during_compaction_loses_nothing_and_resurrects_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng(11);
    let args = ["--compaction-interval", "0", "--compaction-rate-mib", "8"];
    for it in 0..iterations(6) {
        let mut srv = Server::start(dir.path(), &args, &[])?;
        verify(
            &srv,
            &*ledger.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
            &format!("iteration {it} start"),
        )?;
        // Make garbage: upload, then delete most of it (acknowledged).
        let load = start_load(&srv.addr, &ledger, 4, 100 + it as u64);
        poll("uploads", Duration::from_secs(120), || {
            Ok((load.acks.load(Ordering::SeqCst) >= 300).then_some(()))
        })?;
        load.finish();
        {
            let mut l = ledger.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let fids: Vec<String> = l.live.keys().cloned().collect();
            for fid in fids.iter().take(fids.len() * 2 / 3) {
                let r = srv.req("DELETE", &format!("/{fid}"), &[], b"")?;
                assert_eq!(r.status, 200);
                l.live.remove(fid);
                l.deleted.push(fid.clone());
            }
        }
        // Compact while writes continue; kill at a random point of it.
        let addr = srv.addr.clone();
        let compact = std::thread::spawn(move || {
            fs_common::request(&addr, "POST", "/compact?volume=1", &[], b"")
        });
        let load = start_load(&srv.addr, &ledger, 4, 200 + it as u64);
        let during = rng.below(3) != 0;
        if during {
            poll("compaction running", Duration::from_secs(60), || {
                Ok((volume_stat(&srv, "compacting")? == true).then_some(()))
            })?;
        }
        let extra = load.acks.load(Ordering::SeqCst) + rng.below(60);
        poll("writes during compaction", Duration::from_secs(120), || {
            Ok((load.acks.load(Ordering::SeqCst) >= extra).then_some(()))
        })?;
        srv.proc.signal(libc::SIGKILL);
        srv.proc.wait_timeout(Duration::from_secs(30))?;
        load.finish();
        let _ = compact.join();
        let srv = Server::start(dir.path(), &args, &[])?;
        verify(
            &srv,
            &*ledger.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
            &format!("iteration {it} after kill"),
        )?;
        for f in ["1.cpd", "1.cpx", "1.cpm"] {
            assert!(!dir.path().join(f).exists(), "{f} left after recovery");
        }
        drop(srv);
    }
    Ok(())
}

fn populate_and_delete(srv: &Server, ledger: &mut Ledger, n: u64) -> anyhow::Result<()> {
    for i in 0..n {
        let len = (i * 37 % 5000) as usize;
        let fid = srv.put(&bytes(i + 1, len), &[])?;
        if i % 2 == 0 {
            assert_eq!(srv.req("DELETE", &format!("/{fid}"), &[], b"")?.status, 200);
            ledger.deleted.push(fid);
        } else {
            ledger.live.insert(fid, (i + 1, len));
        }
    }
    Ok(())
}

#[test]
fn crash_at_each_compaction_commit_step_rolls_back_or_forward() -> anyhow::Result<()> {
    for (fp, rev) in [
        ("compact-before-marker", 0),
        ("compact-after-marker", 1),
        ("compact-between-renames", 1),
    ] {
        let dir = tempfile::tempdir()?;
        let mut ledger = Ledger::default();
        let mut srv = Server::start(
            dir.path(),
            &["--compaction-interval", "0"],
            &[("AERGOFS_FAILPOINT", fp)],
        )?;
        populate_and_delete(&srv, &mut ledger, 400)?;
        // The server aborts inside the compaction: the request fails or gets no answer.
        let r = srv.req("POST", "/compact?volume=1", &[], b"");
        assert!(
            r.map(|r| r.status != 200).unwrap_or(true),
            "{fp}: compaction reported success"
        );
        let st = srv.proc.wait_timeout(Duration::from_secs(30))?;
        assert!(!st.success(), "{fp}: server did not abort");
        drop(srv);
        let srv = Server::start(dir.path(), &["--compaction-interval", "0"], &[])?;
        verify(&srv, &ledger, fp)?;
        assert_eq!(volume_stat(&srv, "revision")?, rev, "{fp}");
        assert!(!any_temp(dir.path()), "{fp}: temporary files left");
        // And the volume keeps working and compacts fine afterwards.
        let fid = srv.put(b"after", &[])?;
        let r = srv.req("POST", "/compact?volume=1", &[], b"")?;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        verify(&srv, &ledger, fp)?;
        assert_eq!(srv.get(&fid)?.body, b"after");
    }
    Ok(())
}

fn any_temp(dir: &Path) -> bool {
    ["1.cpd", "1.cpx", "1.cpm"]
        .iter()
        .any(|f| dir.join(f).exists())
}
