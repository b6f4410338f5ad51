//! Store-level tests: round trips, restart recovery, damaged files, compaction.
// Test code: panicking on unexpected errors is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aergo_os::io::{IoConfig, IoService};
use aergofs::needle::Meta;
use aergofs::store::StoreError;
use aergofs::volume::{Durability, VolumeConfig, VolumeError, VolumePaths};
use aergofs::{Fid, Store, StoreConfig};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

fn cfg(durability: Durability) -> StoreConfig {
    StoreConfig {
        volume: VolumeConfig {
            durability,
            compaction_rate: 0,
            ..VolumeConfig::default()
        },
        compaction_interval: None,
        ..StoreConfig::default()
    }
}

async fn open(dir: &Path, d: Durability) -> Arc<Store> {
    Store::open(dir, cfg(d), IoService::start(IoConfig::default()))
        .await
        .unwrap()
}

fn blob(rng: &mut impl Rng, max: usize) -> Vec<u8> {
    let n = rng.gen_range(0..=max);
    (0..n).map(|_| rng.gen()).collect()
}

async fn check_all(store: &Store, want: &HashMap<Fid, Vec<u8>>) {
    for (fid, data) in want {
        let n = store
            .read(*fid)
            .await
            .unwrap_or_else(|e| panic!("{fid}: {e}"));
        assert_eq!(n.data(), &data[..], "{fid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_overwrites_deletes_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut want = HashMap::new();
    let mut deleted = Vec::new();
    {
        let store = open(dir.path(), Durability::GroupCommit).await;
        let meta = Meta {
            name: Some("x.bin".into()),
            mime: Some("application/x-test".into()),
            last_modified: Some(5),
        };
        for i in 0..200 {
            let data = blob(&mut rng, if i % 50 == 0 { 3 << 20 } else { 5000 });
            let (fid, _) = store.put(&data, &meta).await.unwrap();
            want.insert(fid, data);
        }
        // Overwrites: newest wins.
        let fids: Vec<Fid> = want.keys().copied().take(20).collect();
        for fid in &fids[..10] {
            let data = blob(&mut rng, 100);
            store.write(*fid, &data, &Meta::default()).await.unwrap();
            want.insert(*fid, data);
        }
        for fid in &fids[10..] {
            store.delete(*fid).await.unwrap();
            want.remove(fid);
            deleted.push(*fid);
        }
        check_all(&store, &want).await;
        let n = store.read(*want.keys().next().unwrap()).await.unwrap();
        assert!(n.mime().is_some() || n.name().is_none());
        // Wrong cookie: not found, and delete with it changes nothing.
        let f = *want.keys().next().unwrap();
        let wrong = Fid {
            cookie: f.cookie ^ 1,
            ..f
        };
        assert!(matches!(
            store.read(wrong).await,
            Err(StoreError::Volume(VolumeError::NotFound))
        ));
        assert!(store.delete(wrong).await.is_err());
        assert!(matches!(
            store.read(Fid { volume: 99, ..f }).await,
            Err(StoreError::UnknownVolume(99))
        ));
        store.close().await.unwrap();
    }
    let store = open(dir.path(), Durability::GroupCommit).await;
    check_all(&store, &want).await;
    for fid in &deleted {
        assert!(store.read(*fid).await.is_err(), "deleted {fid} reappeared");
    }
    let st = store.stats();
    assert_eq!(st.live_needles, want.len() as u64);
    assert_eq!(st.volumes[0].deleted_needles, 20);
}

/// Writes a set of needles, then drops the store without closing (like a crash after
/// the page cache has the data), and returns what was acknowledged.
async fn populate(dir: &Path, n: usize, seed: u64) -> HashMap<Fid, Vec<u8>> {
    let store = open(dir, Durability::Fast).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut want = HashMap::new();
    for _ in 0..n {
        let data = blob(&mut rng, 3000);
        let (fid, _) = store.put(&data, &Meta::default()).await.unwrap();
        want.insert(fid, data);
    }
    store.close().await.unwrap();
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_corrupt_or_short_index_is_rebuilt() {
    for case in [
        "missing",
        "garbage",
        "short",
        "torn-record",
        "wrong-revision",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let want = populate(dir.path(), 300, 2).await;
        let p = VolumePaths::new(dir.path(), 1);
        let idx = std::fs::read(&p.idx).unwrap();
        match case {
            "missing" => std::fs::remove_file(&p.idx).unwrap(),
            "garbage" => {
                let mut b = idx.clone();
                for x in &mut b[100..400] {
                    *x = 0xa5;
                }
                std::fs::write(&p.idx, b).unwrap();
            }
            "short" => std::fs::write(&p.idx, &idx[..idx.len() / 2 / 16 * 16]).unwrap(),
            "torn-record" => std::fs::write(&p.idx, &idx[..idx.len() - 5]).unwrap(),
            _ => {
                let mut b = idx.clone();
                b[12] ^= 1;
                std::fs::write(&p.idx, b).unwrap();
            }
        }
        let store = open(dir.path(), Durability::GroupCommit).await;
        check_all(&store, &want).await;
        assert_eq!(store.stats().live_needles, want.len() as u64, "{case}");
        drop(store);
        // The repaired index is complete: a second start needs no orphan scan.
        let store = open(dir.path(), Durability::GroupCommit).await;
        check_all(&store, &want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let want = populate(dir.path(), 100, 3).await;
    let p = VolumePaths::new(dir.path(), 1);
    let before = std::fs::metadata(&p.dat).unwrap().len();
    // Append the first half of a valid needle (a write torn by a crash).
    let n = aergofs::needle::encode(100_000, 7, &[9u8; 500], &Meta::default(), false).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&p.dat)
        .unwrap();
    std::io::Write::write_all(&mut f, &n[..n.len() / 2]).unwrap();
    drop(f);
    let store = open(dir.path(), Durability::GroupCommit).await;
    check_all(&store, &want).await;
    assert_eq!(
        std::fs::metadata(&p.dat).unwrap().len(),
        before,
        "tail not cut"
    );
    let ghost = Fid {
        volume: 1,
        key: 100_000,
        cookie: 7,
    };
    assert!(store.read(ghost).await.is_err());
    // New writes after the cut work and survive a restart.
    let (fid, _) = store.put(b"after", &Meta::default()).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path(), Durability::GroupCommit).await;
    assert_eq!(store.read(fid).await.unwrap().data(), b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_needles_past_the_index_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = populate(dir.path(), 50, 4).await;
    let p = VolumePaths::new(dir.path(), 1);
    let idx_before = std::fs::read(&p.idx).unwrap();
    let more = populate(dir.path(), 50, 5).await;
    want.extend(more);
    // Roll the index back: the last 50 needles are orphans in the volume.
    std::fs::write(&p.idx, &idx_before).unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    check_all(&store, &want).await;
    assert_eq!(store.stats().live_needles, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edited_volume_damages_only_the_touched_needles() {
    for case in ["flip", "zero-range", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let want = populate(dir.path(), 200, 6).await;
        let p = VolumePaths::new(dir.path(), 1);
        let mut dat = std::fs::read(&p.dat).unwrap();
        let mid = dat.len() / 2;
        match case {
            "flip" => dat[mid] ^= 0x10,
            "zero-range" => dat[mid..mid + 1000].iter_mut().for_each(|b| *b = 0),
            _ => dat.truncate(mid + 3),
        }
        std::fs::write(&p.dat, &dat).unwrap();
        for rebuild in [false, true] {
            if rebuild {
                let _ = std::fs::remove_file(&p.idx);
            }
            let store = open(dir.path(), Durability::GroupCommit).await;
            let mut ok = 0;
            let mut bad = 0;
            for (fid, data) in &want {
                match store.read(*fid).await {
                    Ok(n) => {
                        assert_eq!(n.data(), &data[..], "{case}: wrong data for {fid}");
                        ok += 1;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(
                            msg.contains("corrupt") || msg.contains("not found"),
                            "{case}: {msg}"
                        );
                        bad += 1;
                    }
                }
            }
            assert!(bad >= 1, "{case}: damage not detected");
            match case {
                "truncate" => assert!(ok >= 90, "{case}: only {ok} intact"),
                _ => assert!(bad <= 4 && ok >= 196, "{case}: {bad} damaged"),
            }
            // The store still takes writes.
            let (fid, _) = store.put(b"still works", &Meta::default()).await.unwrap();
            assert_eq!(store.read(fid).await.unwrap().data(), b"still works");
            store.close().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_superblock_leaves_volume_untouched_and_others_working() {
    let dir = tempfile::tempdir().unwrap();
    let want = populate(dir.path(), 20, 7).await;
    let p = VolumePaths::new(dir.path(), 1);
    let mut dat = std::fs::read(&p.dat).unwrap();
    dat[3] ^= 0xff;
    std::fs::write(&p.dat, &dat).unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    let st = store.stats();
    assert_eq!(st.failed_volumes.len(), 1);
    assert!(
        st.failed_volumes[0].1.contains("superblock"),
        "{:?}",
        st.failed_volumes
    );
    let f = *want.keys().next().unwrap();
    assert!(matches!(
        store.read(f).await,
        Err(StoreError::UnknownVolume(1))
    ));
    // New data goes to a new volume; the damaged file is not modified.
    let (fid, _) = store.put(b"new", &Meta::default()).await.unwrap();
    assert_eq!(fid.volume, 2);
    assert_eq!(std::fs::read(&p.dat).unwrap(), dat);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_live_drops_deleted_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let mut want = HashMap::new();
    let mut deleted = Vec::new();
    for i in 0..2000 {
        let data = blob(&mut rng, 2000);
        let (fid, _) = store.put(&data, &Meta::default()).await.unwrap();
        if i % 2 == 0 {
            store.delete(fid).await.unwrap();
            deleted.push(fid);
        } else {
            want.insert(fid, data);
        }
    }
    let before = store.stats().volumes[0].clone();
    assert!(before.garbage_ratio > 0.4, "{before:?}");
    // Writers and deleters keep going during the compaction.
    let s2 = store.clone();
    let writer = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut got = HashMap::new();
        let mut gone = Vec::new();
        for i in 0..600 {
            let data = blob(&mut rng, 2000);
            let (fid, _) = s2.put(&data, &Meta::default()).await.unwrap();
            if i % 3 == 0 {
                s2.delete(fid).await.unwrap();
                gone.push(fid);
            } else {
                got.insert(fid, data);
            }
        }
        (got, gone)
    });
    let reports = store.compact(Some(1)).await.unwrap();
    let (got, gone) = writer.await.unwrap();
    want.extend(got);
    deleted.extend(gone);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].after < before.size, "{reports:?}");
    check_all(&store, &want).await;
    for fid in &deleted {
        assert!(store.read(*fid).await.is_err(), "deleted {fid} reappeared");
    }
    let after = store.stats().volumes[0].clone();
    assert_eq!(after.revision, 1);
    assert_eq!(after.live_needles, want.len() as u64);
    store.close().await.unwrap();
    drop(store);
    for f in ["1.cpd", "1.cpx", "1.cpm"] {
        assert!(!dir.path().join(f).exists(), "{f} left behind");
    }
    let store = open(dir.path(), Durability::GroupCommit).await;
    check_all(&store, &want).await;
    for fid in &deleted {
        assert!(
            store.read(*fid).await.is_err(),
            "deleted {fid} reappeared after restart"
        );
    }
    assert!(store.stats().volumes[0].garbage_ratio < 0.35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_compaction_without_marker_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let want = populate(dir.path(), 50, 10).await;
    let p = VolumePaths::new(dir.path(), 1);
    std::fs::write(&p.cpd, b"half a compacted volume").unwrap();
    std::fs::write(&p.cpx, b"junk").unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    check_all(&store, &want).await;
    assert!(!p.cpd.exists() && !p.cpx.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_compaction_with_marker_rolls_forward() {
    let dir = tempfile::tempdir().unwrap();
    let want = populate(dir.path(), 50, 11).await;
    let p = VolumePaths::new(dir.path(), 1);
    // Make a complete compacted copy (as a compaction would) in another directory.
    let other = tempfile::tempdir().unwrap();
    for f in ["1.dat", "1.idx"] {
        std::fs::copy(dir.path().join(f), other.path().join(f)).unwrap();
    }
    {
        let s = open(other.path(), Durability::GroupCommit).await;
        s.compact(Some(1)).await.unwrap();
        s.close().await.unwrap();
    }
    std::fs::copy(other.path().join("1.dat"), &p.cpd).unwrap();
    // Crash after the first rename: only the data was renamed; marker still there.
    std::fs::write(&p.marker, 1u32.to_le_bytes()).unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    check_all(&store, &want).await;
    assert_eq!(store.stats().volumes[0].revision, 1);
    assert!(!p.marker.exists() && !p.cpd.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_commit_writes_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..16u8 {
        let s = store.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for i in 0..50u8 {
                let data = vec![t ^ i; 1000 + i as usize];
                let (fid, _) = s.put(&data, &Meta::default()).await.unwrap();
                out.push((fid, data));
            }
            out
        });
    }
    let mut want = HashMap::new();
    while let Some(r) = set.join_next().await {
        want.extend(r.unwrap());
    }
    assert_eq!(want.len(), 800);
    check_all(&store, &want).await;
    let io = store.io().stats();
    // 800 writes + 800 reads; with group commit far fewer than 800 fsyncs were needed.
    assert!(io.completed < 2 * 800 + 800, "{io:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_memory_is_at_most_16_bytes_per_live_needle() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::Fast).await;
    let n = 40_960;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..8 {
        let s = store.clone();
        set.spawn(async move {
            for _ in 0..n / 8 {
                s.put(&[u8::try_from(t).unwrap(); 16], &Meta::default())
                    .await
                    .unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
    let st = store.stats();
    assert_eq!(st.live_needles, n as u64);
    // 12 B per entry in full chunks (40,960 = 10 full chunks); the chunk table adds a few
    // bytes in total. The bound is 16 B.
    assert!(
        st.index_bytes_per_live_needle <= 12.1,
        "{}",
        st.index_bytes_per_live_needle
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_without_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    let (fid, _) = store.put(b"keep", &Meta::default()).await.unwrap();
    let size = store.stats().volumes[0].size;
    let long = Meta {
        name: Some("n".repeat(300)),
        ..Meta::default()
    };
    assert!(matches!(
        store.put(b"x", &long).await,
        Err(StoreError::Volume(VolumeError::Needle(_)))
    ));
    assert!(store
        .write(Fid { volume: 7, ..fid }, b"x", &Meta::default())
        .await
        .is_err());
    assert_eq!(store.stats().volumes[0].size, size);
    assert_eq!(store.read(fid).await.unwrap().data(), b"keep");
    // A second server on the same directory is refused.
    let e = Store::open(
        dir.path(),
        cfg(Durability::Fast),
        IoService::start(IoConfig::default()),
    )
    .await;
    assert!(matches!(e, Err(StoreError::Locked(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_volumes_turn_read_only_and_writes_roll_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(Durability::Fast);
    c.volume.max_size = 64 << 10;
    let store = Store::open(dir.path(), c.clone(), IoService::start(IoConfig::default()))
        .await
        .unwrap();
    let mut want = HashMap::new();
    for i in 0..100u32 {
        let data = vec![u8::try_from(i).unwrap(); 3000];
        let (fid, _) = store.put(&data, &Meta::default()).await.unwrap();
        want.insert(fid, data);
    }
    let st = store.stats();
    assert!(st.volumes.len() >= 4, "{:?}", st.volumes.len());
    assert!(st.volumes[0].read_only);
    assert_eq!(st.volumes[0].read_only_reason.as_deref(), Some("full"));
    assert!(st.volumes.iter().all(|v| v.size <= 64 << 10));
    check_all(&store, &want).await;
    // Writing to an id on a full volume is refused clearly.
    let on_full = *want.keys().find(|f| f.volume == 1).unwrap();
    let e = store.write(on_full, &[0u8; 5000], &Meta::default()).await;
    assert!(
        matches!(e, Err(StoreError::Volume(VolumeError::ReadOnly(1, _)))),
        "{e:?}"
    );
    store.close().await.unwrap();
    drop(store);
    let store = Store::open(dir.path(), c, IoService::start(IoConfig::default()))
        .await
        .unwrap();
    check_all(&store, &want).await;
}

fn refused(r: Result<aergofs::volume::WriteInfo, StoreError>) -> bool {
    matches!(r, Err(StoreError::Volume(VolumeError::WriteRefused)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_deletes_need_the_cookie_and_an_assigned_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::GroupCommit).await;
    let m = Meta::default();
    let (fid, _) = store.put(b"original", &m).await.unwrap();
    let wrong = Fid {
        cookie: fid.cookie ^ 1,
        ..fid
    };
    let size = store.stats().volumes[0].size;
    // Overwrite and delete with another cookie: refused, nothing written.
    assert!(refused(store.write(wrong, b"evil", &m).await));
    assert!(matches!(
        store.delete(wrong).await,
        Err(StoreError::Volume(VolumeError::NotFound))
    ));
    assert_eq!(store.stats().volumes[0].size, size);
    assert_eq!(store.read(fid).await.unwrap().data(), b"original");
    // Keys the volume never assigned, small or huge: refused.
    for key in [fid.key + 1, fid.key + 1000, u32::MAX as u64, u64::MAX] {
        let made_up = Fid { key, ..fid };
        assert!(refused(store.write(made_up, b"x", &m).await), "{made_up}");
    }
    assert_eq!(store.stats().volumes[0].size, size);
    // An assignment's first write needs its cookie; then the owner may replace the file.
    let a = store.assign().await.unwrap();
    assert!(a.key > fid.key);
    assert!(refused(
        store
            .write(
                Fid {
                    cookie: a.cookie ^ 0x8000_0000,
                    ..a
                },
                b"squat",
                &m
            )
            .await
    ));
    store.write(a, b"mine", &m).await.unwrap();
    store.write(a, b"mine v2", &m).await.unwrap();
    assert_eq!(store.read(a).await.unwrap().data(), b"mine v2");
    // The right cookie replaces and deletes; a deleted id is never written again.
    store.write(fid, b"replaced", &m).await.unwrap();
    assert_eq!(store.read(fid).await.unwrap().data(), b"replaced");
    store.delete(fid).await.unwrap();
    assert!(refused(store.write(fid, b"back", &m).await));
    assert!(store.read(fid).await.is_err());
    // An assignment not used before a restart is void.
    let unused = store.assign().await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = open(dir.path(), Durability::GroupCommit).await;
    assert!(refused(store.write(unused, b"late", &m).await));
    assert!(refused(store.write(fid, b"back", &m).await));
    assert_eq!(store.read(a).await.unwrap().data(), b"mine v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_never_handed_out_twice_even_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let m = Meta::default();
    let mut c = cfg(Durability::GroupCommit);
    c.min_garbage_bytes = 0;
    let (keep, gone, top) = {
        let store = Store::open(dir.path(), c.clone(), IoService::start(IoConfig::default()))
            .await
            .unwrap();
        let (keep, _) = store.put(b"keep", &m).await.unwrap();
        let (gone, _) = store.put(&[5u8; 10_000], &m).await.unwrap();
        store.delete(gone).await.unwrap();
        // The largest key is assigned but never written.
        let top = store.assign().await.unwrap();
        store.compact(Some(1)).await.unwrap();
        assert!(refused(store.write(gone, b"again", &m).await));
        store.close().await.unwrap();
        (keep, gone, top)
    };
    // The compacted volume holds no deleted needle, yet the high-water key survives.
    let store = Store::open(dir.path(), c, IoService::start(IoConfig::default()))
        .await
        .unwrap();
    assert_eq!(store.stats().volumes[0].live_needles, 1);
    assert_eq!(store.read(keep).await.unwrap().data(), b"keep");
    let next = store.assign().await.unwrap();
    assert!(
        next.key > top.key && next.key > gone.key,
        "key {} handed out again (deleted {}, assigned {})",
        next.key,
        gone.key,
        top.key
    );
    assert!(refused(store.write(gone, b"again", &m).await));
    store.write(next, b"next", &m).await.unwrap();
    assert_eq!(store.read(next).await.unwrap().data(), b"next");
}

/// An id assigned before a compaction commits and written after it is stored: the
/// compaction's high-water tombstone of that (largest) key does not void the assignment.
/// (`POST /` assigns then writes, so a compaction in between used to fail it with 404.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_pending_across_a_compaction_stays_writable() {
    let dir = tempfile::tempdir().unwrap();
    let m = Meta::default();
    let mut c = cfg(Durability::GroupCommit);
    c.min_garbage_bytes = 0;
    let (gone, top) = {
        let store = Store::open(dir.path(), c.clone(), IoService::start(IoConfig::default()))
            .await
            .unwrap();
        let (gone, _) = store.put(&[5u8; 10_000], &m).await.unwrap();
        store.delete(gone).await.unwrap();
        let top = store.assign().await.unwrap();
        store.compact(Some(1)).await.unwrap();
        store.write(top, b"top", &m).await.unwrap();
        assert_eq!(store.read(top).await.unwrap().data(), b"top");
        assert!(refused(store.write(gone, b"again", &m).await));
        store.close().await.unwrap();
        (gone, top)
    };
    let store = Store::open(dir.path(), c, IoService::start(IoConfig::default()))
        .await
        .unwrap();
    assert_eq!(store.read(top).await.unwrap().data(), b"top");
    assert!(refused(store.write(gone, b"again", &m).await));
    let next = store.assign().await.unwrap();
    assert!(next.key > top.key, "key {} handed out again", next.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_keys_on_disk_never_make_assignment_wrap() {
    // Volumes written before keys were checked may hold any client-chosen key, up to
    // 2^64 - 1. Recovery indexes them, and assignment moves on to a new volume instead
    // of wrapping to key 0 or leaving the index's dense 32-bit range.
    for huge in [u64::MAX, u32::MAX as u64, 1 << 40] {
        let dir = tempfile::tempdir().unwrap();
        let want = populate(dir.path(), 20, 11).await;
        let p = VolumePaths::new(dir.path(), 1);
        let n = aergofs::needle::encode(huge, 9, b"legacy", &Meta::default(), false).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p.dat)
            .unwrap();
        std::io::Write::write_all(&mut f, &n).unwrap();
        drop(f);
        let store = open(dir.path(), Durability::GroupCommit).await;
        check_all(&store, &want).await;
        let legacy = Fid {
            volume: 1,
            key: huge,
            cookie: 9,
        };
        assert_eq!(store.read(legacy).await.unwrap().data(), b"legacy");
        let mut fids = Vec::new();
        for i in 0..3u8 {
            let (fid, _) = store.put(&[i; 100], &Meta::default()).await.unwrap();
            assert_eq!(fid.volume, 2, "{huge:x}: {fid}");
            assert!(fid.key >= 1 && fid.key <= u32::MAX as u64, "{fid}");
            assert_eq!(fid.to_string().parse::<Fid>().unwrap(), fid);
            fids.push((fid, vec![i; 100]));
        }
        for (fid, data) in &fids {
            assert_eq!(store.read(*fid).await.unwrap().data(), &data[..]);
        }
        // The legacy key can still be replaced (with its cookie) and deleted on volume 1.
        store
            .write(legacy, b"legacy 2", &Meta::default())
            .await
            .unwrap();
        assert_eq!(store.read(legacy).await.unwrap().data(), b"legacy 2");
        store.delete(legacy).await.unwrap();
        check_all(&store, &want).await;
    }
}
