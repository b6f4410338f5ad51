//! Snapshot tests of every screen, rendered with ratatui's `TestBackend` from fixed fixtures:
//! a healthy node, a dead node, an empty chain, huge numbers and long hashes at 80×24, the
//! drill-down views, overlays and the 16-colour console theme.
//!
//! Update snapshots after an intended change with `INSTA_UPDATE=always cargo test --release
//! -p aergo-top --test screens` and review the diff of `tests/snapshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test crate: helpers panic on failure

use aergo_os::control::{ExitInfo, LogLine, ServiceInfo, ServiceState, SystemInfo};
use aergo_os::sample::{DiskRate, FsUsage, LoadAvg, MemInfo, NetRate, Sample};
use aergo_os::slots::{SlotInfo, SlotState};
use aergo_top::app::{App, Endpoints};
use aergo_top::model::*;
use aergo_top::source::Update;
use aergo_top::theme::{Theme, ThemeKind};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

/// 2023-11-14 22:13:20 UTC.
const NOW: u64 = 1_700_000_000_000;
const ADDR: &str = "AmNwLkPcWz6kYQnL2XcFHdG8QGsVHbmx9kZ9ykqsuAS3gC5e3vxW";
const ADDR2: &str = "AmLqGzA5NQKbvbKWvPWh9o1fdtCqrY8DmEzsZ3hPGGdiyCDTGrkK";

fn hash(n: u64) -> String {
    format!("{:016x}", n).repeat(4)
}

fn endpoints() -> Endpoints {
    Endpoints {
        rpc: "http://127.0.0.1:7845".into(),
        init: "unix:/run/aergo/init.sock".into(),
        fs: "http://127.0.0.1:7848".into(),
    }
}

fn empty_app() -> App {
    App::new(Theme::new(ThemeKind::TrueColor), false, endpoints(), NOW)
}

fn block_row(h: u64) -> BlockRow {
    BlockRow {
        hash: hash(h * 7919),
        height: h,
        timestamp_ms: NOW - (1000 - h) * 1000,
        producer: ADDR.into(),
        tx_count: h % 4,
        size: 300 + h * 17,
        gas_used: (h % 4) * 21_000,
    }
}

fn sample() -> Sample {
    Sample {
        cpu_pct: 12.5,
        cores_pct: vec![20.0, 5.0],
        mem: MemInfo {
            total: 24 << 30,
            free: 10 << 30,
            available: 20 << 30,
            buffers: 1 << 28,
            cached: 6 << 30,
            swap_total: 0,
            swap_free: 0,
        },
        load: LoadAvg {
            one: 0.52,
            five: 0.40,
            fifteen: 0.31,
            running: 2,
            tasks: 300,
        },
        disks: vec![DiskRate {
            name: "vda".into(),
            read_bps: 4096.0,
            write_bps: 1_572_864.0,
            read_iops: 1.0,
            write_iops: 30.0,
            util_pct: 3.0,
        }],
        nets: vec![
            NetRate {
                iface: "eth0".into(),
                rx_bps: 2048.0,
                tx_bps: 512.0,
                rx_total: 1 << 30,
                tx_total: 1 << 29,
            },
            NetRate {
                iface: "lo".into(),
                rx_bps: 100.0,
                tx_bps: 100.0,
                rx_total: 1,
                tx_total: 1,
            },
        ],
        filesystems: vec![
            FsUsage {
                mount: "/".into(),
                device: "/dev/vda1".into(),
                fstype: "ext4".into(),
                total: 100 << 30,
                avail: 60 << 30,
                free: 65 << 30,
            },
            FsUsage {
                mount: "/data".into(),
                device: "/dev/vdb1".into(),
                fstype: "ext4".into(),
                total: 10 << 30,
                avail: 512 << 20,
                free: 600 << 20,
            },
        ],
        uptime_secs: 93_784,
        addresses: vec!["eth0 192.168.1.20/24".into()],
    }
}

/// A healthy dev node with a bit of everything.
fn healthy() -> App {
    let mut a = empty_app();
    let m = &mut a.model;
    m.chain.ok(
        ChainView {
            chain_id: hash(42),
            chain_name: "aergo-dev".into(),
            height: 1000,
            best_hash: hash(1000 * 7919),
            finalized_height: 998,
            consensus: "solo".into(),
            block_interval_ms: 1000,
            genesis_time_ms: NOW - 1_000_000,
            best_time_ms: NOW - 400,
        },
        NOW,
    );
    m.node.ok(
        NodeView {
            version: "0.1.0".into(),
            node_address: ADDR.into(),
            producer: true,
            peers: 0,
            mempool_size: 3,
            mempool_bytes: 660,
            syncing: false,
            sync_current: 1000,
            sync_target: 1000,
            uptime_secs: 3725,
            io_backend: "io_uring".into(),
            disk_low: false,
        },
        NOW,
    );
    m.merge_blocks((975..=1000).rev().map(block_row).collect(), NOW);
    m.mempool.ok(
        MempoolView {
            count: 3,
            bytes: 660,
            max_txs: 10_000,
            max_bytes: 64 << 20,
            txs: (0..3)
                .map(|i| MempoolTx {
                    hash: hash(500 + i),
                    from: if i == 1 { ADDR2.into() } else { ADDR.into() },
                    nonce: 7 + i,
                    gas_price: "1000000000".into(),
                    fee: "21000000000000".into(),
                    age_ms: 1500 + i * 10_000,
                })
                .collect(),
            preconf: Some(aergo_top::model::PreconfView {
                enabled: true,
                pending_height: Some(1001),
                sequence_length: 42,
                last_minute: 3_600,
                p50_us: Some(610),
                p99_us: Some(2_950),
                broken: 0,
                evidence: 1,
            }),
            pipeline: Some(pipeline(NOW, 2)),
        },
        NOW,
    );
    m.pipeline_prev = Some(pipeline(NOW - 2_000, 1));
    m.init.ok(
        InitView {
            services: vec![
                ServiceInfo {
                    name: "node".into(),
                    state: ServiceState::Running,
                    pid: Some(212),
                    restarts: 0,
                    uptime_ms: Some(3_725_000),
                    ..Default::default()
                },
                ServiceInfo {
                    name: "aergofs".into(),
                    state: ServiceState::Backoff,
                    pid: None,
                    restarts: 3,
                    uptime_ms: None,
                    last_exit: Some(ExitInfo {
                        code: Some(1),
                        signal: None,
                        at_unix_ms: NOW - 4000,
                    }),
                    message: Some("volume dir not writable".into()),
                    command: vec!["/bin/aergofs".into(), "--data".into(), "/data/fs".into()],
                },
                ServiceInfo {
                    name: "dashboard".into(),
                    state: ServiceState::Running,
                    pid: Some(230),
                    restarts: 0,
                    uptime_ms: Some(3_700_000),
                    ..Default::default()
                },
            ],
            system: SystemInfo {
                hostname: "aergo-1".into(),
                kernel: "6.1.0-27-amd64".into(),
                uptime_ms: 3_800_000,
                addresses: vec!["10.0.2.15/24".into(), "fec0::5054:ff:fe12:3456/64".into()],
                data_mounted: true,
                data_total_bytes: 10 << 30,
                data_free_bytes: 9 << 30,
                ..Default::default()
            },
            slots: vec![
                SlotInfo {
                    name: "A".into(),
                    version: "1.0.0".into(),
                    state: SlotState::Good,
                },
                SlotInfo {
                    name: "B".into(),
                    version: "1.1.0".into(),
                    state: SlotState::Active,
                },
            ],
            last_upgrade: Some("upgraded: slot B (1.1.0) committed".into()),
            reboot_at: None,
        },
        NOW,
    );
    m.storage.ok(
        StorageView::from_json(&serde_json::json!({
            "io_backend": "io_uring",
            "disk": {"total": 10u64 << 30, "free": 9u64 << 30},
            "volumes": [
                {"id": 1, "size": 1048576, "live_needles": 120, "live_bytes": 900000,
                 "deleted_needles": 4, "garbage_ratio": 0.12, "read_only": false,
                 "compacting": false},
                {"id": 2, "size": 4096, "live_needles": 0, "live_bytes": 0,
                 "deleted_needles": 0, "garbage_ratio": 0.0, "read_only": true,
                 "read_only_reason": "disk full", "compacting": false}
            ],
            "needles": 120,
            "uptime_secs": 3600
        })),
        NOW,
    );
    let mut s = sample();
    for i in 0..60u64 {
        s.cpu_pct = (i * 7 % 100) as f32;
        s.cores_pct = vec![(i * 11 % 100) as f32, (i * 3 % 100) as f32];
        s.nets[0].rx_bps = (i * 1000) as f64;
        s.disks[0].write_bps = ((60 - i) * 5000) as f64;
        m.resources.push(s.clone());
    }
    m.logs.ok(
        (0..40)
            .map(|i| LogLine {
                service: "node".into(),
                seq: i,
                ts_ms: NOW - (40 - i) * 1000,
                stream: if i % 9 == 0 { "stderr" } else { "stdout" }.into(),
                text: format!(
                    "INFO aergo_chain::producer: produced block height={} txs={} took=3ms",
                    960 + i,
                    i % 4
                ),
            })
            .collect(),
        NOW,
    );
    m.peers.ok(Vec::new(), NOW);
    m.consensus.ok(
        aergo_top::source::rpc::consensus_view(&serde_json::json!({
            "engine": "solo", "block_interval_ms": 1000, "height": 1000, "lib_height": 1000,
            "lib_hash": hash(1000 * 7919), "side_blocks": 0, "reorgs": 0,
            "rejected_blocks": 0, "synced_blocks": 0, "gossip_blocks": 0,
            "peer_id": null, "listen_addrs": []
        })),
        NOW,
    );
    a.log_service = Some("node".into());
    a
}

const ADDR3: &str = "AmMPpJdyQ6cFwmrnLhGYjKm9nPvzn5T8YXBzTvUydMCiKFmjJfBF";
const ADDR4: &str = "AmPJ5q7ZgrXyvWT3zYmoYDd9EUYeGVvJpWmbhkFyPEBr27VYB4xe";

fn peer(n: u64, dir: &str, height: u64, rtt: Option<u64>) -> PeerRow {
    PeerRow {
        id: format!("12D3KooW{}", "ABCDEFGHJK".repeat(4)) + &n.to_string(),
        address: format!(
            "/ip4/10.0.0.{n}/tcp/17846/p2p/12D3KooW{}{n}",
            "ABCDEFGHJK".repeat(4)
        ),
        direction: dir.into(),
        best_height: height,
        latency_ms: rtt,
        node: None,
    }
}

/// The `consensus_info` answer of a DPoS BP (this node is ADDR, third in the schedule).
fn dpos_json() -> serde_json::Value {
    serde_json::json!({
        "engine": "dpos", "block_interval_ms": 500, "height": 1000, "lib_height": 997,
        "lib_hash": hash(997 * 7919), "side_blocks": 1, "reorgs": 2, "rejected_blocks": 0,
        "synced_blocks": 310, "gossip_blocks": 688,
        "peer_id": format!("12D3KooW{}", "MEMEMEMEME".repeat(4)),
        "listen_addrs": [
            format!("/ip4/0.0.0.0/tcp/17846/p2p/12D3KooW{}", "MEMEMEMEME".repeat(4)),
            "/ip6/::/tcp/17846"
        ],
        "dpos": {
            "slot": 12_343, "round": 1234, "round_slots": 10, "bp_count": 4,
            "probation": [{"address": ADDR4, "score": -40, "standing": "probation"}],
            "active": [
                {"address": ADDR2, "score": 100, "standing": "active"},
                {"address": ADDR3, "score": 97, "standing": "active", "missed_slots": 5},
                {"address": ADDR, "score": 100, "standing": "active"}
            ],
            "upcoming": [
                {"slot": 12_343, "producer": ADDR3},
                {"slot": 12_344, "producer": ADDR},
                {"slot": 12_345, "producer": ADDR4},
                {"slot": 12_346, "producer": ADDR2},
                {"slot": 12_347, "producer": ADDR3},
                {"slot": 12_348, "producer": ADDR},
                {"slot": 12_349, "producer": ADDR2}
            ],
            "me_scheduled": true
        }
    })
}

/// A BP of a 4-BP DPoS network with three peers.
fn dpos() -> App {
    let mut a = healthy();
    let m = &mut a.model;
    if let Some(c) = m.chain.value.as_mut() {
        c.consensus = "dpos".into();
        c.block_interval_ms = 500;
        c.finalized_height = 997;
    }
    if let Some(n) = m.node.value.as_mut() {
        n.peers = 3;
    }
    m.peers.ok(
        vec![
            peer(3, "inbound", 1000, Some(2)),
            peer(2, "outbound", 999, Some(14)),
            peer(4, "outbound", 512, None),
        ],
        NOW,
    );
    m.consensus
        .ok(aergo_top::source::rpc::consensus_view(&dpos_json()), NOW);
    press(&mut a, KeyCode::Char('4'));
    a
}

fn block_detail(h: u64) -> BlockDetail {
    BlockDetail {
        summary: block_row(h),
        parent_hash: hash((h - 1) * 7919),
        tx_root: hash(1),
        receipts_root: hash(2),
        state_root: hash(3),
        consensus: "solo".into(),
        signature: hash(4) + &hash(5),
        txs: (0..3)
            .map(|i| TxRow {
                hash: hash(900 + i),
                kind: "transfer".into(),
                from: ADDR.into(),
                to: ADDR2.into(),
                amount: "1500000000000000000".into(),
                nonce: i,
            })
            .collect(),
        merge: None,
    }
}

fn tx_detail(hash_s: String) -> TxDetail {
    TxDetail {
        tx: TxView {
            hash: hash_s.clone(),
            kind: "transfer".into(),
            from: ADDR.into(),
            to: ADDR2.into(),
            nonce: 1,
            amount: "1500000000000000000".into(),
            payload: String::new(),
            gas_limit: 100_000,
            gas_price: "1000000000".into(),
            chain_id: hash(42),
            signature: hash(6) + &hash(7),
            size: 220,
            status: "included".into(),
            block_hash: Some(hash(990 * 7919)),
            block_height: Some(990),
            index: Some(1),
        },
        receipt: Some(ReceiptView {
            tx_hash: hash_s,
            block_hash: hash(990 * 7919),
            block_height: 990,
            index: 1,
            status: "ok".into(),
            error: None,
            gas_used: 21_000,
            fee: "21000000000000".into(),
            result: "\"OK\"".into(),
            events: vec![EventView {
                name: "transfer".into(),
                data: format!("{{\"from\":\"{ADDR}\",\"amount\":\"1500000000000000000\"}}"),
            }],
        }),
    }
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| aergo_top::ui::draw(f, app)).unwrap();
    t.backend().to_string()
}

fn press(app: &mut App, c: KeyCode) -> aergo_top::app::Action {
    app.key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn screen(n: char) -> App {
    let mut a = healthy();
    press(&mut a, KeyCode::Char(n));
    a
}

macro_rules! snap {
    ($name:literal, $app:expr) => {
        snap!($name, $app, 80, 24)
    };
    ($name:literal, $app:expr, $w:expr, $h:expr) => {{
        let out = render(&$app, $w, $h);
        insta::assert_snapshot!($name, out);
        out
    }};
}

#[test]
fn overview_healthy() {
    let out = snap!("overview", healthy());
    assert!(out.contains("1,000"), "height shown");
    assert!(
        out.contains("aergofs restarting"),
        "alert for a service in backoff"
    );
    assert!(
        out.contains("/data 95% full"),
        "alert for a nearly full disk"
    );
}

#[test]
fn overview_wide() {
    let out = snap!("overview_120x40", healthy(), 120, 40);
    assert!(out.contains("UTC"), "clock shown on wide terminals");
}

#[test]
fn overview_node_down() {
    let mut a = healthy();
    a.apply(Update::Chain(Err("connection refused".into())));
    a.now_ms = NOW + 125_000;
    let out = snap!("overview_node_down", a);
    assert!(out.contains("unreachable since 22:13:20 (2m 05s ago)"));
    assert!(out.contains("chain stalled"), "stale head is flagged");
}

/// A chain that skips empty slots (a repository's) and has nothing pending is idle, not
/// stalled: no alert for its old head. Pending transactions, or empty blocks among the loaded
/// ones (a chain that fills its slots), make the same gap a stall.
#[test]
fn idle_chain_without_pending_transactions_is_not_stalled() {
    let idle = || {
        let mut a = healthy();
        a.now_ms = NOW + 25 * 60_000;
        let rows: Vec<BlockRow> = (1..=3)
            .rev()
            .map(|h| BlockRow {
                tx_count: 1,
                ..block_row(h)
            })
            .collect();
        a.model.blocks = Default::default();
        a.model.merge_blocks(rows, NOW);
        let mut pool = a.model.mempool.get().cloned().unwrap();
        pool.count = 0;
        pool.txs.clear();
        a.model.mempool.ok(pool, NOW);
        a
    };
    let text = |a: &App| render(a, 120, 40);
    let a = idle();
    assert!(!text(&a).contains("chain stalled"), "{}", text(&a));
    // Transactions wait: a stall.
    let mut a = idle();
    let mut pool = a.model.mempool.get().cloned().unwrap();
    pool.count = 2;
    a.model.mempool.ok(pool, NOW);
    assert!(text(&a).contains("chain stalled"), "{}", text(&a));
    // The chain makes empty blocks: a stall.
    let mut a = idle();
    a.model.merge_blocks(
        vec![BlockRow {
            tx_count: 0,
            ..block_row(4)
        }],
        NOW,
    );
    assert!(text(&a).contains("chain stalled"), "{}", text(&a));
}

/// On a host, an unreachable node gets the hint the CLI gives: how to start one, or --rpc.
#[test]
fn host_mode_says_how_to_start_a_node() {
    let mut a = empty_app();
    a.host_mode = true;
    a.apply(Update::Node(Err("connection refused".into())));
    a.apply(Update::Chain(Err("connection refused".into())));
    let out = render(&a, 120, 40);
    assert!(out.contains("node unreachable"), "{out}");
    assert!(out.contains("aergo-node --dev"), "{out}");
    assert!(out.contains("AERGO_RPC"), "{out}");
    // The appliance's console: no such hint (init restarts its node).
    a.host_mode = false;
    let out = render(&a, 120, 40);
    assert!(!out.contains("aergo-node --dev"), "{out}");
}

#[test]
fn overview_waiting() {
    let a = empty_app();
    let out = snap!("overview_waiting", a);
    assert!(out.contains("waiting for node"));
}

#[test]
fn overview_syncing_huge_numbers() {
    let mut a = healthy();
    let m = &mut a.model;
    if let Some(c) = m.chain.value.as_mut() {
        c.height = u64::MAX;
        c.finalized_height = u64::MAX - 5;
    }
    if let Some(n) = m.node.value.as_mut() {
        n.syncing = true;
        n.sync_current = 12_345_678_901;
        n.sync_target = 98_765_432_109;
        n.uptime_secs = u64::MAX / 1000;
        n.mempool_size = u64::MAX;
    }
    let out = snap!("overview_huge", a);
    assert!(out.contains("18,446,744,073,709,551,615"));
    assert!(out.contains("syncing"));
}

#[test]
fn blocks_list() {
    let out = snap!("blocks", screen('2'));
    assert!(out.contains("Blocks (26)"));
    assert!(out.contains("1,000"));
}

#[test]
fn blocks_empty_chain_and_node_down() {
    let mut a = empty_app();
    a.model.blocks.ok(Vec::new(), NOW);
    press(&mut a, KeyCode::Char('2'));
    let out = snap!("blocks_empty", a);
    assert!(out.contains("the chain has no blocks yet"));

    let mut a = empty_app();
    a.apply(Update::Blocks(Err(
        "error sending request: connection refused".into(),
    )));
    press(&mut a, KeyCode::Char('2'));
    let out = snap!("blocks_node_down", a);
    assert!(out.contains("no blocks: node unreachable"));
}

#[test]
fn blocks_huge_numbers() {
    let mut a = screen('2');
    a.model.add_block(
        BlockRow {
            hash: "f".repeat(64),
            height: u64::MAX,
            timestamp_ms: NOW,
            producer: ADDR.into(),
            tx_count: u64::MAX,
            size: u64::MAX,
            gas_used: u64::MAX,
        },
        NOW,
    );
    let out = snap!("blocks_huge", a);
    assert!(out.contains("18,446,7"), "huge height starts visibly");
}

#[test]
fn blocks_filter() {
    let mut a = screen('2');
    press(&mut a, KeyCode::Char('/'));
    for c in "99".chars() {
        press(&mut a, KeyCode::Char(c));
    }
    let out = snap!("blocks_filter", a);
    assert!(
        out.contains("/99_"),
        "filter being typed shows in the status line"
    );
    assert!(!out.contains(" 985 "), "non-matching rows hidden");
}

/// `/` + a whole hash no loaded row has: the search screen while the node answers, then the
/// block it found, or a message when nothing has that hash.
#[test]
fn blocks_search_the_chain() {
    let mut a = screen('2');
    press(&mut a, KeyCode::Char('/'));
    let q = "7e".repeat(32);
    for c in q.chars() {
        press(&mut a, KeyCode::Char(c));
    }
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::Search(q.clone())
    );
    let out = render(&a, 80, 24);
    assert!(out.contains("Search  (Esc back)"), "{out}");
    assert!(out.contains("searching the chain"), "{out}");
    a.apply(Update::Found(q.clone(), Ok(Found::Nothing)));
    let out = render(&a, 80, 24);
    assert!(
        out.contains("no block and no transaction on the chain has hash"),
        "{out}"
    );
    press(&mut a, KeyCode::Esc);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::Search(q.clone())
    );
    a.apply(Update::Found(q, Ok(Found::Block(block_detail(12)))));
    let out = render(&a, 80, 24);
    assert!(out.contains("Block 12  (Esc back)"), "{out}");
    assert!(out.contains("Transactions (3)"), "{out}");
    // A prefix that no loaded row has says how to search the chain.
    press(&mut a, KeyCode::Esc);
    press(&mut a, KeyCode::Esc);
    press(&mut a, KeyCode::Char('/'));
    for c in "deadbeef".chars() {
        press(&mut a, KeyCode::Char(c));
    }
    press(&mut a, KeyCode::Enter);
    let out = render(&a, 80, 24);
    assert!(out.contains("no loaded block's hash starts with"), "{out}");
}

#[test]
fn block_tx_receipt_drill_down() {
    let mut a = screen('2');
    press(&mut a, KeyCode::Down);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::OpenBlock(999)
    );
    let out = snap!("block_loading", a);
    assert!(out.contains("loading block 999"));
    a.apply(Update::Block(999, Ok(block_detail(999))));
    let out = snap!("block_detail", a);
    assert!(out.contains("Transactions (3)"));
    press(&mut a, KeyCode::Down);
    let h = hash(901);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::OpenTx(h.clone())
    );
    a.apply(Update::Tx(h.clone(), Ok(tx_detail(h.clone()))));
    let out = snap!("tx_detail", a);
    assert!(out.contains("1.5 AERGO"));
    assert!(out.contains("included in block 990 at index 1"));
    press(&mut a, KeyCode::Enter);
    let out = snap!("receipt", a);
    assert!(out.contains("Events (1)"));
    assert!(out.contains("0.000021 AERGO"));
}

#[test]
fn tx_not_found_and_pending() {
    let mut a = screen('3');
    let h = hash(501);
    press(&mut a, KeyCode::Down);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::OpenTx(h.clone())
    );
    a.apply(Update::Tx(h.clone(), Err("not found (-32001)".into())));
    let out = snap!("tx_not_found", a);
    assert!(out.contains("not found"));
    let mut d = tx_detail(h.clone());
    d.tx.status = "pending".into();
    d.tx.block_height = None;
    d.tx.index = None;
    d.receipt = None;
    a.apply(Update::Tx(h, Ok(d)));
    let out = snap!("tx_pending", a);
    assert!(out.contains("none yet (pending)"));
}

/// A `pipeline_status` reading at `at_ms`: the counters of a node that handled 4,000
/// transactions per `k`.
fn pipeline(at_ms: u64, k: u64) -> aergo_top::model::PipelineView {
    let stage =
        |name: &str, runs: u64, items: u64, busy_us: u64, queue: u64| aergo_top::model::StageView {
            name: name.into(),
            runs: runs * k,
            items: items * k,
            busy_us: busy_us * k,
            inside: 0,
            queue,
        };
    aergo_top::model::PipelineView {
        at_ms,
        stages: vec![
            stage("ingest", 4_000, 4_000, 40_000, 0),
            stage("verify", 40, 4_000, 70_000, 0),
            stage("admit", 4_000, 4_000, 20_000, 0),
            stage("assemble", 2, 4_000, 9_000, 1_200),
            stage("execute", 0, 0, 0, 0),
            stage("commit", 2, 2, 5_000, 0),
            stage("publish", 2, 2, 300, 3),
        ],
        dtt_width_milli: 4_000_000,
        exec_workers: 2,
    }
}

#[test]
fn pipeline_rates_come_from_two_readings() {
    let cur = pipeline(NOW, 2);
    let prev = pipeline(NOW - 2_000, 1);
    let r = cur.rates(Some(&prev));
    // 4,000 more transactions in 2 s; 40,000 µs over 4,000 runs.
    assert_eq!(r[0].per_sec, Some(2_000.0));
    assert_eq!(r[0].latency_ms, Some(0.01));
    assert_eq!((r[3].waiting, r[4].latency_ms), (1_200, None));
    // No earlier reading, or a restarted node (counters went down): no rate.
    assert!(cur.rates(None).iter().all(|s| s.per_sec.is_none()));
    assert!(prev.rates(Some(&cur)).iter().all(|s| s.per_sec.is_none()));
}

#[test]
fn mempool() {
    let out = snap!("mempool", screen('3'));
    assert!(out.contains("txs 3 / 10,000"));
    assert!(
        out.contains(
            "preconf p50 0.6/p99 3.0 ms | 3,600/min | seq 42 @1,001 | broken 0 | evidence 1"
        ),
        "{out}"
    );
}

#[test]
fn peers_solo() {
    let out = snap!("peers", screen('4'));
    assert!(out.contains("Peers (0)"));
    assert!(out.contains("no peers: a solo/dev node runs alone"));
    assert!(out.contains("solo: this node produces every block alone"));
    assert!(!out.contains("Schedule"), "no schedule on a solo chain");
    assert!(out.contains("(the head)") && !out.contains("(-0)"), "{out}");
    assert!(out.contains("solo, 1,000 ms slots"), "{out}");
}

#[test]
fn peers_dpos() {
    let out = snap!("peers_dpos", dpos());
    assert!(out.contains("Peers (3)"));
    assert!(
        out.contains("/ip4/10.0.0.2/tcp/17846 "),
        "no /p2p/<id> suffix"
    );
    assert!(out.contains("outbound"));
    assert!(out.contains("14 ms"));
    assert!(
        out.contains("997 (3 behind)"),
        "LIB and its lag behind the head"
    );
    assert!(out.contains("Round     1,234 "));
    assert!(out.contains("Slot      12,343 (4/10)"));
    assert!(out.contains("3 of 4 active, 1 probation"));
    assert!(out.contains("This node in the schedule"));
    assert!(out.contains("probation"));
    assert!(out.contains("-40"));
    // Markers: ADDR is this node, ADDR3 produces the current slot.
    let row = |addr: &str| {
        let head = &addr[..4];
        out.lines()
            .find(|l| l.contains(head) && l.contains("active"))
            .unwrap_or_else(|| panic!("no schedule row for {addr}:\n{out}"))
            .to_string()
    };
    assert!(row(ADDR).contains(" *"), "{}", row(ADDR));
    assert!(row(ADDR3).contains(">"), "{}", row(ADDR3));
    assert!(!row(ADDR2).contains('*') && !row(ADDR2).contains('>'));
    assert!(out.contains("12,344"), "upcoming slots listed");

    let out = snap!("peers_dpos_120x40", dpos(), 120, 40);
    assert!(
        out.contains("12,349"),
        "all upcoming slots fit on a big terminal"
    );
    assert!(out.contains("synced 310, gossip 688"));
    assert!(out.contains("/ip4/0.0.0.0/tcp/17846 (+1)"));
}

/// The Node column: a peer that proved an elected producer's node address is marked `BP`,
/// one that proved another address shows it, one that proved none shows `—`. The peers come
/// from fabricated `PeerJson` answers through the RPC conversion, as from a node.
#[test]
fn peers_show_which_node_each_is() {
    let mut a = dpos();
    let wire = |n: u64, node: Option<&str>| -> aergo_rpc::PeerJson {
        let mut v = serde_json::json!({
            "id": peer(n, "", 0, None).id,
            "address": peer(n, "", 0, None).address,
            "direction": "outbound", "best_height": 1000, "latency_ms": 3
        });
        if let Some(node) = node {
            v["node"] = node.into();
        }
        serde_json::from_value(v).unwrap()
    };
    const FOLLOWER: &str = "AmLfoLLowerNodeAddressNotAProducerXXXXXXXXXXXXXXXXXX";
    a.apply(Update::Peers(Ok(vec![
        aergo_top::source::rpc::peer_row(wire(2, Some(ADDR2))),
        aergo_top::source::rpc::peer_row(wire(3, Some(FOLLOWER))),
        aergo_top::source::rpc::peer_row(wire(4, None)),
    ])));
    let out = snap!("peers_nodes", a);
    let row = |n: u64| {
        out.lines()
            .find(|l| l.contains(&format!("10.0.0.{n}/")))
            .unwrap_or_else(|| panic!("no row for peer {n}:\n{out}"))
            .to_string()
    };
    assert!(out.contains("Node"), "a Node column:\n{out}");
    assert!(
        row(2).contains(&format!("{}…", &ADDR2[..5])) && row(2).contains(" BP"),
        "{}",
        row(2)
    );
    assert!(
        row(3).contains("AmLf") && !row(3).contains(" BP"),
        "{}",
        row(3)
    );
    assert!(row(4).contains('—') && !row(4).contains("Am"), "{}", row(4));
    assert!(
        out.contains("/ip4/10.0.0.2/tcp/17846 "),
        "the address still fits at 80 columns:\n{out}"
    );
}

/// The BP count is governance's: consensus_info still reports the genesis `bp_count` (4)
/// after a vote raised it to 5 and five producers were elected; the panel says 5 of 5.
#[test]
fn peers_bp_count_agrees_with_governance() {
    let mut v = dpos_json();
    let five: Vec<serde_json::Value> = [ADDR, ADDR2, ADDR3, ADDR4, "AmFifth"]
        .iter()
        .map(|a| serde_json::json!({"address": a, "score": 100, "standing": "active"}))
        .collect();
    v["dpos"]["active"] = five.into();
    v["dpos"]["probation"] = serde_json::json!([]);
    let mut c = aergo_top::source::rpc::consensus_view(&v);
    aergo_top::source::rpc::with_governance(&mut c, Some(5));
    let mut a = dpos();
    a.model.consensus.ok(c.clone(), NOW);
    let out = render(&a, 80, 24);
    assert!(out.contains("BPs       5 of 5 active"), "{out}");
    assert!(!out.contains("of 4"), "{out}");
    // Governance unknown: a question mark, not the genesis figure.
    aergo_top::source::rpc::with_governance(&mut c, None);
    a.model.consensus.ok(c, NOW);
    assert!(render(&a, 80, 24).contains("5 of ? active"));
}

#[test]
fn peers_malformed_consensus_info() {
    let mut a = dpos();
    a.model.consensus.ok(
        aergo_top::source::rpc::consensus_view(&serde_json::json!({
            "engine": "dpos", "height": "high", "lib_height": null,
            "dpos": {
                "slot": 7, "round_slots": 0,
                "active": [{"address": ADDR}, {"score": 5, "standing": "excluded"}, 9],
                "upcoming": [{"producer": ADDR}, {"slot": 8}]
            }
        })),
        NOW,
    );
    let out = snap!("peers_malformed", a);
    assert!(out.contains("Round     ? "), "unknown round shown as ?");
    assert!(out.contains("Slot      7 "));
    assert!(out.contains("excluded"));
    assert!(out.lines().any(|l| l.contains("LIB") && l.contains('?')));

    // A dpos engine without its `dpos` object, and an answer that is not even an object.
    let mut a = dpos();
    a.model.consensus.ok(
        aergo_top::source::rpc::consensus_view(&serde_json::json!({"engine": "dpos"})),
        NOW,
    );
    let out = render(&a, 80, 24);
    assert!(out.contains("dpos: the node reported no schedule"));
    a.model.consensus.ok(
        aergo_top::source::rpc::consensus_view(&serde_json::json!([1, 2, 3])),
        NOW,
    );
    let out = render(&a, 80, 24);
    assert!(out.contains("Producers (?)"));
}

#[test]
fn peers_schedule_trailing_the_clock() {
    // First slot of the next round, before its first block: the node's schedule is still the
    // previous round's and it lists no upcoming slots.
    let mut v = dpos_json();
    v["dpos"]["slot"] = serde_json::json!(12_350);
    v["dpos"]["upcoming"] = serde_json::json!([]);
    v["dpos"]["me_scheduled"] = serde_json::json!(false);
    let mut a = dpos();
    a.model
        .consensus
        .ok(aergo_top::source::rpc::consensus_view(&v), NOW);
    let out = render(&a, 80, 24);
    assert!(out.contains("Round     1,234 (clock in 1,235)"), "{out}");
    assert!(out.contains("Slot      12,350 (1/10)"), "{out}");
    assert!(
        out.contains("none yet: the schedule of round 1,235"),
        "{out}"
    );
    assert!(out.contains("BP, out of the schedule"), "{out}");
    assert!(
        !out.lines().any(|l| l.contains("││>")),
        "no next producer known:\n{out}"
    );
}

#[test]
fn peers_node_down_and_old_node() {
    let mut a = dpos();
    for u in [
        Update::Chain(Err("connection refused".into())),
        Update::Node(Err("connection refused".into())),
        Update::Peers(Err("connection refused".into())),
        Update::Consensus(Err("connection refused".into())),
    ] {
        a.apply(u);
    }
    let out = snap!("peers_node_down", a);
    assert!(out.contains("unreachable since"));
    assert!(out.contains("Peers (3) stale"), "last good peers kept");

    // A node without `peers`/`consensus_info`: the error shows, no panic.
    let mut a = healthy();
    a.model.peers = Default::default();
    a.model.consensus = Default::default();
    a.apply(Update::Peers(Err("unknown method `peers` (-32601)".into())));
    a.apply(Update::Consensus(Err(
        "unknown method `consensus_info` (-32601)".into(),
    )));
    press(&mut a, KeyCode::Char('4'));
    let out = snap!("peers_old_node", a);
    assert!(out.contains("peers: unknown method `peers`"));
    assert!(out.contains("consensus_info: unknown method"));

    let mut a = empty_app();
    press(&mut a, KeyCode::Char('4'));
    assert!(render(&a, 80, 24).contains("waiting for node"));
}

#[test]
fn overview_shows_sync_progress() {
    let mut a = healthy();
    if let Some(n) = a.model.node.value.as_mut() {
        n.syncing = true;
        n.sync_current = 120;
        n.sync_target = 500;
    }
    let out = render(&a, 80, 24);
    assert!(
        out.lines()
            .any(|l| l.contains("Sync") && l.contains("syncing 120/500 (24.0%)")),
        "{out}"
    );
}

#[test]
fn resources() {
    let out = snap!("resources", screen('5'));
    assert!(out.contains("eth0"));
    assert!(out.contains("/data"));
    assert!(out.contains("57.6 KiB/s"), "rx rate of eth0");
}

#[test]
fn resources_console_theme() {
    let mut a = screen('5');
    a.theme = Theme::new(ThemeKind::Ansi16);
    let out = snap!("resources_16", a);
    for glyph in ['▁', '▂', '▃', '▅', '▆', '▇', '⠁', '●'] {
        assert!(!out.contains(glyph), "console theme must not use {glyph}");
    }
}

#[test]
fn storage() {
    let out = snap!("storage", screen('6'));
    assert!(out.contains("read-only: disk full"));
    let mut a = empty_app();
    a.apply(Update::Storage(Err("connection refused".into())));
    press(&mut a, KeyCode::Char('6'));
    let out = snap!("storage_down", a);
    assert!(out.contains("AergoFS unreachable"));
}

#[test]
fn services_and_restart_confirm() {
    let mut a = screen('7');
    let out = snap!("services", a);
    assert!(out.contains("backoff"));
    press(&mut a, KeyCode::Char('j'));
    let out = snap!("services_selected", a);
    assert!(out.contains("aergofs: volume dir not writable  /bin/aergofs --data /data/fs"));
    press(&mut a, KeyCode::Char('r'));
    let out = snap!("services_confirm", a);
    assert!(out.contains("Restart service 'aergofs'?"));
    assert_eq!(
        press(&mut a, KeyCode::Char('y')),
        aergo_top::app::Action::Restart("aergofs".into())
    );
}

/// The slots panel: a broken upgrade that fell back (its slot bad, its reason wrapped), a
/// slot on trial, and a disk without A/B slots (no panel).
#[test]
fn services_slots() {
    let mut a = screen('7');
    let out = render(&a, 80, 24);
    assert!(out.contains("System slots"), "{out}");
    assert!(out.contains("upgraded: slot B (1.1.0) committed"), "{out}");
    let mut v = a.model.init.get().cloned().unwrap();
    v.slots[0] = SlotInfo {
        name: "A".into(),
        version: "1.2.0".into(),
        state: SlotState::Bad,
    };
    v.last_upgrade = Some(
        "fell back: slot A (1.2.0) is bad: the node was not healthy within 30 s; rebooting into slot B"
            .into(),
    );
    a.model.init.ok(v.clone(), NOW);
    let out = snap!("services_slots_fell_back", a);
    assert!(out.contains("1.2.0") && out.contains(" bad "), "{out}");
    assert!(
        out.contains("rebooting into slot B"),
        "the outcome wraps: {out}"
    );
    v.slots[0].state = SlotState::Good;
    v.slots[0].version = "1.0.0".into();
    v.slots[1].state = SlotState::Trying;
    v.last_upgrade = None;
    a.model.init.ok(v.clone(), NOW);
    let out = snap!("services_slots_trying", a);
    assert!(out.contains("trying") && out.contains("none since this disk was flashed"));
    // An upgrade installed with `--reboot-at 03:30`: the panel says when init reboots.
    v.reboot_at = Some(1_796_526_000 / 86_400 * 86_400 + 3 * 3600 + 30 * 60);
    a.model.init.ok(v.clone(), NOW);
    let out = render(&a, 80, 24);
    assert!(out.contains("reboot scheduled at 03:30 UTC"), "{out}");
    v.slots.clear();
    a.model.init.ok(v, NOW);
    let out = render(&a, 80, 24);
    assert!(!out.contains("System slots"), "{out}");
}

#[test]
fn logs() {
    let mut a = healthy();
    a.screen = aergo_top::app::Screen::Logs;
    let out = snap!("logs", a);
    assert!(out.contains("height=999"), "follow shows the tail");
    press(&mut a, KeyCode::Char('/'));
    press(&mut a, KeyCode::Char('9'));
    press(&mut a, KeyCode::Char('7'));
    press(&mut a, KeyCode::Char('0'));
    press(&mut a, KeyCode::Enter);
    let out = snap!("logs_filtered", a);
    assert!(out.contains("height=970"));
    assert!(!out.contains("height=971"));
}

#[test]
fn help_overlay() {
    let mut a = healthy();
    press(&mut a, KeyCode::Char('?'));
    let out = snap!("help", a);
    assert!(out.contains("restart selected service"));
    press(&mut a, KeyCode::Esc);
    assert!(!a.help);
}

#[test]
fn every_screen_renders_at_80x24_without_data() {
    for n in ('0'..='9').rev() {
        let mut a = empty_app();
        press(&mut a, KeyCode::Char(n));
        let out = render(&a, 80, 24);
        assert_eq!(out.lines().count(), 24);
        assert!(out.contains("?:help"), "screen {n} keeps the status line");
    }
}

#[test]
fn tiny_and_huge_terminals_never_panic() {
    for (w, h) in [(1, 1), (20, 5), (40, 12), (80, 24), (250, 70)] {
        for n in '1'..='9' {
            for mut a in [empty_app(), healthy(), dpos()] {
                press(&mut a, KeyCode::Char(n));
                let out = render(&a, w, h);
                assert_eq!(out.lines().count(), h as usize, "screen {n} at {w}x{h}");
                press(&mut a, KeyCode::Char('?'));
                render(&a, w, h);
            }
        }
    }
}

/// Glyphs the Linux console font has besides ASCII: box drawing and the block halves.
const VT_GLYPHS: &str = "─│┌┐└┘├┤┬┴┼█▄▀";

#[test]
fn console_theme_draws_only_glyphs_the_linux_console_has() {
    for n in '1'..='9' {
        let mut a = healthy();
        a.theme = Theme::new(ThemeKind::Ansi16);
        press(&mut a, KeyCode::Char(n));
        for out in [render(&a, 80, 24), render(&a, 120, 40)] {
            for c in out.chars() {
                assert!(
                    c.is_ascii() || VT_GLYPHS.contains(c),
                    "screen {n} draws {c:?} in the console theme:\n{out}"
                );
            }
        }
    }
    let mut a = dpos();
    a.theme = Theme::new(ThemeKind::Ansi16);
    for out in [render(&a, 80, 24), render(&a, 120, 40)] {
        for c in out.chars() {
            assert!(
                c.is_ascii() || VT_GLYPHS.contains(c),
                "the DPoS peers screen draws {c:?} in the console theme:\n{out}"
            );
        }
    }
    let mut a = healthy();
    a.theme = Theme::new(ThemeKind::Ansi16);
    press(&mut a, KeyCode::Char('?'));
    let out = snap!("help_console", a);
    assert!(out.contains("^v / j k"), "arrows become ASCII");
}

#[test]
fn overview_on_a_host_without_init() {
    let mut a = healthy();
    a.model.init = Default::default();
    a.apply(Update::Init(Err(
        "connect unix:/run/aergo/init.sock: No such file".into(),
    )));
    let out = snap!("overview_host", a);
    assert!(out.contains("init unreachable"));
    assert!(
        out.contains("192.168.1.20/24"),
        "local addresses stand in for init's"
    );
}

fn repo_row(name: &str, visibility: &str, hosted: bool, h: Option<u64>) -> RepoRow {
    RepoRow {
        name: name.into(),
        engine: if name == "aergo" { "dpos" } else { "solo" }.into(),
        visibility: visibility.into(),
        hosted,
        height: h,
        finalized_height: h.map(|h| h.saturating_sub(2)),
        ..Default::default()
    }
}

/// The root chain, a public hosted repository with its directory, a private one, one this
/// node does not host, and one whose `dd_info` failed.
fn with_repos() -> App {
    let mut a = healthy();
    let mut team_a = repo_row("team-a", "public", true, Some(1_234_567));
    team_a.dd_height = Some(12);
    team_a.members = Some(3);
    let mut broken = repo_row("broken", "public", true, Some(8));
    broken.error = Some("dd_info: no answer within 5s".into());
    a.apply(Update::Repos(Ok(vec![
        repo_row("aergo", "public", true, Some(1_000)),
        team_a,
        repo_row("team-b", "private", true, Some(40)),
        repo_row("elsewhere", "public", false, None),
        broken,
    ])));
    a
}

#[test]
fn repositories_screen() {
    let mut a = with_repos();
    press(&mut a, KeyCode::Char('9'));
    let out = snap!("repos", a);
    assert!(out.contains("Repositories (5)"));
    assert!(out.contains("[aergo]"), "the ledger read now is in view");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap()
            .to_string()
    };
    assert!(line("team-a").contains("1,234,567") && line("team-a").contains(" 12 "));
    assert!(line("team-b").contains("private") && line("team-b").contains(" - "));
    assert!(line("elsewhere").contains(" no "));
    assert!(
        line("broken").contains("dd_i"),
        "the error starts in its row"
    );
    let wide = snap!("repos_120x40", a, 120, 40);
    assert!(wide.contains("UTC"));
    let broken = wide.lines().find(|l| l.contains(" broken ")).unwrap();
    assert!(broken.contains("dd_info: no answer within 5s"), "{broken}");
    // Selected, its whole error is under the table.
    for _ in 0..4 {
        press(&mut a, KeyCode::Down);
    }
    let out = render(&a, 80, 24);
    assert!(
        out.contains("broken: dd_info: no answer within 5s"),
        "{out}"
    );
}

#[test]
fn repositories_outage_keeps_the_list() {
    let mut a = with_repos();
    press(&mut a, KeyCode::Char('9'));
    a.apply(Update::Repos(Err("connection refused".into())));
    let out = snap!("repos_down", a);
    assert!(out.contains("connection refused"));
    assert!(out.contains("team-a"), "the last list stays");
    let mut empty = healthy();
    press(&mut empty, KeyCode::Char('9'));
    empty.apply(Update::Repos(Err("connection refused".into())));
    assert!(render(&empty, 80, 24).contains("no repositories: the node is unreachable"));
}

#[test]
fn selecting_a_repository_makes_the_node_screens_read_it() {
    let mut a = with_repos();
    press(&mut a, KeyCode::Char('9'));
    press(&mut a, KeyCode::Down);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::SelectRepo(Some("team-a".into()))
    );
    let chain = ChainView {
        chain_name: "team-a".into(),
        chain_id: hash(42),
        height: 1_234_567,
        finalized_height: 1_234_565,
        consensus: "solo".into(),
        ..Default::default()
    };
    a.apply(Update::ForRepo(
        Some("team-a".into()),
        Box::new(Update::Chain(Ok(chain))),
    ));
    // A root answer still in flight is not shown as team-a's.
    a.apply(Update::ForRepo(
        None,
        Box::new(Update::Blocks(Ok(vec![block_row(999)]))),
    ));
    let out = snap!("overview_team_a", a);
    assert!(out.contains("[team-a]") && out.contains("1,234,567"));
    press(&mut a, KeyCode::Char('2'));
    assert!(
        !render(&a, 80, 24).contains(" 999 "),
        "no root block on team-a's list"
    );
}

#[test]
fn a_private_repository_says_so_instead_of_data() {
    let mut a = with_repos();
    press(&mut a, KeyCode::Char('9'));
    press(&mut a, KeyCode::Down);
    press(&mut a, KeyCode::Down);
    press(&mut a, KeyCode::Enter);
    a.apply(Update::ForRepo(
        Some("team-b".into()),
        Box::new(Update::Chain(Err(PRIVATE_MSG.into()))),
    ));
    let out = snap!("overview_private", a);
    assert!(out.contains("[team-b]"));
    assert!(out.contains("private: reads need a member's signature"));
    press(&mut a, KeyCode::Char('2'));
    let blocks = render(&a, 80, 24);
    assert!(
        blocks.contains("reads need a member's signature"),
        "{blocks}"
    );
}

/// A `branch_list` answer as the node gives it (fabricated): `main` at 1,000, a branch this
/// node produces with one of its own, one hosted elsewhere, one deleted.
fn with_branches() -> App {
    use aergo_top::source::branches::{main_row, rows_from};
    let mut a = healthy();
    let root = serde_json::json!({"chain_id": hash(1), "height": 1000, "branches": [
        {"name": "feat", "id": hash(2), "fork_height": 400, "fork_hash": hash(3),
         "producer": ADDR, "strategy": "auto", "creator": ADDR2, "created": 401,
         "deleted": null, "merged_up_to": 407, "hosted": true, "produced_here": true,
         "tip_height": 412, "tip_hash": hash(4)},
        {"name": "elsewhere", "id": hash(5), "fork_height": 950, "fork_hash": hash(6),
         "producer": ADDR2, "strategy": "consistent", "creator": ADDR2, "created": 951,
         "deleted": null, "merged_up_to": 950, "hosted": false, "produced_here": false},
        {"name": "old", "id": hash(7), "fork_height": 10, "fork_hash": hash(8),
         "producer": ADDR, "strategy": "auto", "creator": ADDR, "created": 11,
         "deleted": 20, "merged_up_to": 10, "hosted": true, "produced_here": false}
    ]});
    let feat = serde_json::json!({"chain_id": hash(2), "height": 412, "branches": [
        {"name": "fix", "id": hash(9), "fork_height": 410, "fork_hash": hash(10),
         "producer": ADDR, "strategy": "auto", "creator": ADDR, "created": 411,
         "deleted": null, "merged_up_to": 410, "hosted": true, "produced_here": true,
         "tip_height": 411, "tip_hash": hash(11)}
    ]});
    let mut rows = vec![main_row(&root)];
    let mut top = rows_from(&root, None, 1).into_iter();
    rows.extend(top.next());
    rows.extend(rows_from(&feat, Some("feat"), 2));
    rows.extend(top);
    a.apply(Update::ForRepo(None, Box::new(Update::Branches(Ok(rows)))));
    a
}

#[test]
fn branches_screen() {
    let mut a = with_branches();
    press(&mut a, KeyCode::Char('0'));
    let out = snap!("branches", a);
    assert!(out.contains("Branches of aergo (5)"), "{out}");
    let line = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no row {name}: {out}"))
            .to_string()
    };
    let feat = line(&out, "feat");
    assert!(feat.contains(" 400 ") && feat.contains(" 412 ") && feat.contains(" 407 "));
    assert!(feat.contains("produced here"), "{feat}");
    assert!(line(&out, "`-fix").contains(" 411 "), "fix sits under feat");
    assert!(line(&out, "elsewhere").contains("not here"));
    assert!(line(&out, "old").contains("deleted"));
    assert!(line(&out, "main").contains("1,000") && line(&out, "main").contains('*'));
    let wide = snap!("branches_120x30", a, 120, 30);
    assert!(line(&wide, "elsewhere").contains("consistent"));
    // Enter on feat: every node screen reads it, and the status line says so.
    press(&mut a, KeyCode::Down);
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::SelectBranch(Some("feat".into()))
    );
    let out = render(&a, 80, 24);
    assert!(out.contains("[aergo:feat]"), "{out}");
    press(&mut a, KeyCode::Char('0'));
    let out = render(&a, 80, 24);
    assert!(line(&out, "feat").contains('*'), "{out}");
    assert!(out.contains("reading aergo:feat now"), "{out}");
}

#[test]
fn a_merge_block_shows_what_it_merged_and_excluded() {
    let mut a = screen('2');
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        aergo_top::app::Action::OpenBlock(1000)
    );
    let mut d = block_detail(1000);
    d.merge = Some(MergeView {
        source: "feat".into(),
        source_id: hash(2),
        source_tip: hash(4),
        source_height: 7,
        strategy: "auto".into(),
        merged: vec![hash(900), hash(901)],
        excluded: vec![(
            hash(902),
            "insufficient balance".into(),
            "balance 1 aer < 5 aer".into(),
        )],
    });
    a.apply(Update::Block(1000, Ok(d)));
    let out = snap!("merge_block", a, 100, 36);
    assert!(
        out.contains("Merge ← feat@7  (2 merged, 1 excluded)"),
        "{out}"
    );
    assert!(out.contains("feat at 7 (auto)"), "{out}");
    assert!(
        out.contains("insufficient balance: balance 1 aer < 5 aer"),
        "{out}"
    );
    // Back on the list, the merge block is marked.
    press(&mut a, KeyCode::Esc);
    let out = render(&a, 100, 24);
    let row = out.lines().find(|l| l.contains("1,000")).unwrap();
    assert!(row.contains("merge ← feat@7"), "{row}");
}
