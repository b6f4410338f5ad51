//! The control-protocol server ([`aergo_os::control`]) on the Unix socket (local, no token)
//! and on TCP (token required), plus the state every init thread shares ([`Ctx`]).
//! Each connection runs on its own thread under `catch_unwind`.

use crate::logs::LogStore;
use crate::services::ProcRunner;
use crate::supervisor::{Shutdown, Supervisor};
use aergo_os::control::{
    decode_request, encode, token_matches, Op, Reply, Response, StatusReport, SystemInfo, MAX_LINE,
    PROTOCOL_VERSION,
};
use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// Most concurrent control connections.
pub const MAX_CONNECTIONS: usize = 64;
/// A TCP control connection that sends nothing for this long is closed (a stalled upgrade
/// stream then ends as truncated and frees the upgrade slot).
pub const TCP_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Facts gathered by the boot steps and background threads.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// Addresses configured on the NICs.
    pub addresses: Vec<String>,
    /// `/data` is the real data partition.
    pub data_mounted: bool,
    /// Last SNTP offset.
    pub clock_offset_ms: Option<f64>,
    /// A watchdog is being fed.
    pub watchdog: bool,
}

/// State shared by init's threads.
pub struct Ctx {
    /// The supervisor.
    pub sup: Mutex<Supervisor>,
    /// Logs.
    pub logs: Arc<LogStore>,
    /// Boot facts.
    pub facts: Mutex<Facts>,
    /// Panics caught so far.
    pub panics: AtomicU32,
    /// The TCP token.
    pub token: Mutex<Option<String>>,
    /// Process runner.
    pub runner: Mutex<ProcRunner>,
    /// Set by `inject_panic supervisor`: the next supervisor tick panics.
    pub inject_supervisor_panic: AtomicBool,
    /// Set by `inject_hang`: the supervisor loop stops feeding the watchdog, for good.
    pub inject_supervisor_hang: AtomicBool,
    /// Wakes the main loop.
    pub wake: Mutex<Sender<()>>,
    /// A/B slots (set once `/data` is mounted).
    pub slots: Mutex<Option<crate::upgrade::SlotCtx>>,
    connections: AtomicUsize,
}

impl Ctx {
    /// A context.
    pub fn new(sup: Supervisor, logs: Arc<LogStore>, runner: ProcRunner, wake: Sender<()>) -> Self {
        Self {
            sup: Mutex::new(sup),
            logs,
            facts: Mutex::new(Facts::default()),
            panics: AtomicU32::new(0),
            token: Mutex::new(None),
            runner: Mutex::new(runner),
            inject_supervisor_panic: AtomicBool::new(false),
            inject_supervisor_hang: AtomicBool::new(false),
            wake: Mutex::new(wake),
            slots: Mutex::new(None),
            connections: AtomicUsize::new(0),
        }
    }

    /// Wakes the main loop.
    pub fn wake(&self) {
        let _ = self.wake.lock().send(());
    }

    /// Asks for a shutdown.
    pub fn shutdown(&self, kind: Shutdown, why: &str) {
        let first = {
            let mut s = self.sup.lock();
            let first = s.shutting_down().is_none();
            s.begin_shutdown(kind);
            first
        };
        if first {
            // The console shows the shutdown even while the dashboard owns it.
            let _ = std::fs::write("/proc/sys/kernel/printk", "7 4 1 7\n");
            self.logs.set_echo(true);
            self.logs
                .init(5, &format!("{why}: {kind:?} requested, stopping services"));
        }
        self.wake();
    }

    /// Runs `f`, catching and counting a panic (logged with `what`).
    pub fn guard<T>(&self, what: &str, f: impl FnOnce() -> T) -> Option<T> {
        match std::panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Some(v),
            Err(p) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                self.logs
                    .init(3, &format!("caught panic in {what}: {msg}; continuing"));
                None
            }
        }
    }

    /// The `status` report.
    pub fn status(&self) -> StatusReport {
        let now = crate::sys::monotonic();
        let services = self.sup.lock().report(now);
        let f = self.facts.lock().clone();
        let (total, free) = if f.data_mounted {
            crate::sys::statvfs(aergo_os::paths::DATA_MOUNT).unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        let (slots, last_upgrade, reboot_at) = match self.slots.lock().as_ref() {
            Some(s) => (s.report(), s.slots.last_upgrade.clone(), s.reboot_at),
            None => (Vec::new(), None, None),
        };
        StatusReport {
            slots,
            last_upgrade,
            reboot_at,
            services,
            system: SystemInfo {
                hostname: crate::sys::hostname(),
                kernel: crate::sys::kernel_release(),
                uptime_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
                addresses: f.addresses,
                data_mounted: f.data_mounted,
                data_total_bytes: total,
                data_free_bytes: free,
                clock_offset_ms: f.clock_offset_ms,
                init_rss_kib: crate::sys::rss_kib(),
                init_panics: self.panics.load(Ordering::Relaxed),
                watchdog: f.watchdog,
            },
        }
    }
}

fn reply(w: &mut dyn Write, reply: Reply) -> std::io::Result<()> {
    let bytes = encode(&Response {
        v: PROTOCOL_VERSION,
        reply,
    })
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    w.write_all(&bytes)?;
    w.flush()
}

fn err(message: impl Into<String>) -> Reply {
    Reply::Error {
        message: message.into(),
    }
}

fn ack(message: impl Into<String>) -> Reply {
    Reply::Ack {
        message: message.into(),
    }
}

#[allow(clippy::panic)]
fn injected(subsystem: &str) -> ! {
    std::panic::panic_any(format!("injected panic in {subsystem} (diagnostics)"))
}

/// Executes one operation. `Ok(None)` means the connection was handed to a log follower.
fn dispatch(ctx: &Ctx, op: Op, w: &mut dyn Write) -> std::io::Result<Option<Reply>> {
    let now = crate::sys::monotonic();
    let r = match op {
        Op::Status => Reply::Status(ctx.status()),
        Op::Start { service } => match ctx.sup.lock().start(&service) {
            Ok(()) => ack(format!("{service}: start requested")),
            Err(e) => err(e.to_string()),
        },
        Op::Stop { service } => {
            let mut runner = ctx.runner.lock().clone();
            match ctx.sup.lock().stop(&service, now, &mut runner) {
                Ok(()) => ack(format!("{service}: stopping")),
                Err(e) => err(e.to_string()),
            }
        }
        Op::Restart { service } => {
            let mut runner = ctx.runner.lock().clone();
            match ctx.sup.lock().restart(&service, now, &mut runner) {
                Ok(()) => ack(format!("{service}: restarting")),
                Err(e) => err(e.to_string()),
            }
        }
        Op::Signal { service, signal } => {
            if !(1..=64).contains(&signal) {
                err(format!("bad signal {signal}"))
            } else {
                let mut runner = ctx.runner.lock().clone();
                match ctx.sup.lock().signal(&service, signal, &mut runner) {
                    Ok(pid) => {
                        ctx.logs.init(
                            5,
                            &format!("operator sent signal {signal} to {service} (pid {pid})"),
                        );
                        ack(format!("{service}: signal {signal} sent to pid {pid}"))
                    }
                    Err(e) => err(e.to_string()),
                }
            }
        }
        Op::Logs {
            service,
            lines,
            follow,
        } => {
            if service != "init" && !ctx.sup.lock().has(&service) {
                return Ok(Some(err(format!("no service named `{service}`"))));
            }
            let lines = lines.min(crate::logs::RING_LINES);
            if !follow {
                Reply::Logs {
                    lines: ctx.logs.tail(&service, lines),
                }
            } else {
                let (backlog, rx) = ctx.logs.follow(&service, lines);
                reply(w, Reply::Logs { lines: backlog })?;
                while let Ok(line) = rx.recv() {
                    reply(w, Reply::Line(line))?;
                }
                return Ok(None);
            }
        }
        Op::Reboot => {
            ctx.shutdown(Shutdown::Reboot, "control request");
            ack("rebooting")
        }
        Op::Poweroff => {
            ctx.shutdown(Shutdown::Poweroff, "control request");
            ack("powering off")
        }
        Op::Upgrade { .. } => err("upgrade is handled by the connection (internal)"),
        Op::CancelReboot => {
            let taken = ctx.slots.lock().as_mut().and_then(|s| s.reboot_at.take());
            match taken {
                Some(at) => {
                    let line = format!(
                        "the reboot scheduled at {} is cancelled; the upgraded slot stays armed for the next reboot",
                        aergo_os::schedule::format_utc(at)
                    );
                    ctx.logs.init(5, &format!("operator: {line}"));
                    ack(line)
                }
                None => err("no reboot is scheduled"),
            }
        }
        Op::SupportInfo => Reply::Support {
            files: crate::upgrade::support_files(ctx),
        },
        Op::NodeRpc { method, params } => {
            let socket =
                std::path::Path::new(aergo_os::paths::APPLIANCE_CHAIN_DIR).join("rpc.sock");
            ctx.logs.init(
                5,
                &format!(
                    "operator: node_rpc {}",
                    method.chars().take(64).collect::<String>()
                ),
            );
            match crate::node_rpc::call(&socket, &method, params) {
                Ok(response) => Reply::Rpc { response },
                Err(e) => err(e),
            }
        }
        Op::InjectPanic { subsystem } => match subsystem.as_str() {
            "control" => injected("control"),
            "supervisor" => {
                ctx.inject_supervisor_panic.store(true, Ordering::SeqCst);
                ctx.wake();
                ack("the supervisor will panic once; init must catch it")
            }
            other => err(format!("unknown subsystem `{other}` (control, supervisor)")),
        },
        Op::InjectHang => {
            if ctx.facts.lock().watchdog {
                ctx.inject_supervisor_hang.store(true, Ordering::SeqCst);
                ctx.wake();
                ack("the supervisor loop stops now; the hardware watchdog must reset the machine")
            } else {
                err("no hardware watchdog is being fed: a hang would never end")
            }
        }
    };
    Ok(Some(r))
}

/// The Unix second `--reboot-at HH:MM` (UTC) means at `now`: the next such time. Refuses
/// a bad time, a clock before 1970, and `--reboot` with `--reboot-at`.
pub fn reboot_time(reboot: bool, at: Option<&str>, now: u64) -> Result<Option<u64>, String> {
    let Some(text) = at else { return Ok(None) };
    if reboot {
        return Err("--reboot and --reboot-at exclude each other".into());
    }
    let tod = aergo_os::schedule::TimeOfDay::parse(text).map_err(|e| e.to_string())?;
    if now == 0 {
        return Err(aergo_os::schedule::ScheduleError::NoClock.to_string());
    }
    Ok(Some(tod.next_after(now)))
}

/// Serves one connection until it closes.
pub fn serve<S: Read + Write>(ctx: &Ctx, stream: S, need_token: bool) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let n = (&mut r).take(MAX_LINE as u64).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let req = match decode_request(&line) {
            Ok(req) => req,
            Err(e) => {
                reply(r.get_mut(), err(e.to_string()))?;
                continue;
            }
        };
        if need_token {
            let expected = ctx.token.lock().clone().unwrap_or_default();
            if !token_matches(&expected, req.token.as_deref()) {
                reply(r.get_mut(), err("refused: missing or wrong token"))?;
                return Ok(());
            }
        }
        let op = req.op;
        if let Op::Upgrade {
            size,
            allow_downgrade,
            reboot,
            reboot_at,
        } = op
        {
            let res = match reboot_time(reboot, reboot_at.as_deref(), crate::upgrade::unix_now()) {
                Err(why) => Some(Err(crate::upgrade::UpgradeError::Refused(why))),
                Ok(at) => ctx.guard("upgrade", || {
                    crate::upgrade::install(
                        ctx,
                        &mut (&mut r).take(size),
                        size,
                        allow_downgrade,
                        at,
                    )
                }),
            };
            let rep = match res {
                Some(Ok(line)) => ack(line),
                Some(Err(e)) => err(e.to_string()),
                None => err("upgrade failed: internal error (panic caught; see init log)"),
            };
            let ok = matches!(rep, Reply::Ack { .. });
            reply(r.get_mut(), rep)?;
            if ok && reboot {
                ctx.shutdown(Shutdown::Reboot, "upgrade installed (--reboot)");
            }
            // Read what the client still sends (a refusal can come before the end of the
            // bundle), so it gets the answer instead of a reset connection.
            let mut rest = (&mut r).take(size);
            let _ = std::io::copy(&mut rest, &mut std::io::sink());
            return Ok(());
        }
        let w = r.get_mut();
        let res = ctx.guard("control", || dispatch(ctx, op, w));
        match res {
            Some(Ok(Some(rep))) => reply(r.get_mut(), rep)?,
            Some(Ok(None)) => return Ok(()),
            Some(Err(e)) => return Err(e),
            None => reply(
                r.get_mut(),
                err("internal error (panic caught; see init log)"),
            )?,
        }
    }
}

fn spawn_conn<S: Read + Write + Send + 'static>(ctx: &Arc<Ctx>, stream: S, need_token: bool) {
    if ctx.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        ctx.connections.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let c = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("control-conn".into())
        .spawn(move || {
            let _ = c.guard("control connection", || serve(&c, stream, need_token));
            c.connections.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        ctx.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves the Unix socket at `path` (mode 0600) forever.
pub fn serve_unix(ctx: Arc<Ctx>, path: &str) -> std::io::Result<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    for s in l.incoming().flatten() {
        spawn_conn(&ctx, s, false);
    }
    Ok(())
}

/// Serves the TCP endpoint (token required) forever.
pub fn serve_tcp(ctx: Arc<Ctx>, addr: &str) -> std::io::Result<()> {
    let l = TcpListener::bind(addr)?;
    for s in l.incoming().flatten() {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(TCP_READ_TIMEOUT));
        spawn_conn(&ctx, s, true);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::supervisor::{Backoff, Readiness, Spec};
    use aergo_os::control::{Client, ControlError, Endpoint};
    use std::time::Duration;

    fn ctx() -> Arc<Ctx> {
        let logs = Arc::new(LogStore::new(100, 1 << 20));
        let spec = Spec {
            name: "node".into(),
            argv: vec!["/nonexistent/aergo-node".into()],
            deps: vec![],
            after: vec![],
            after_wait: Duration::ZERO,
            ready: Readiness::Immediate,
            liveness: None,
            stop_timeout: Duration::from_secs(1),
            console: None,
            enabled: true,
        };
        let (tx, _rx) = std::sync::mpsc::channel();
        let runner = ProcRunner {
            logs: logs.clone(),
            cwd: "/".into(),
        };
        let c = Arc::new(Ctx::new(
            Supervisor::new(vec![spec], Backoff::default()),
            logs,
            runner,
            tx,
        ));
        *c.token.lock() = Some("s3cret-token-s3cret-token-s3cret".into());
        c
    }

    #[test]
    fn tcp_requires_the_token_and_unix_does_not() {
        let c = ctx();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let c2 = c.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                spawn_conn(&c2, s, true);
            }
        });
        let anon = Client::new(Endpoint::Tcp(addr.clone()), None);
        match anon.status() {
            Err(ControlError::Refused(m)) => assert!(m.contains("token"), "{m}"),
            other => panic!("expected refusal, got {other:?}"),
        }
        let wrong = Client::new(Endpoint::Tcp(addr.clone()), Some("nope".into()));
        assert!(matches!(wrong.status(), Err(ControlError::Refused(_))));
        let ok = Client::new(
            Endpoint::Tcp(addr),
            Some("s3cret-token-s3cret-token-s3cret".into()),
        );
        let st = ok.status().unwrap();
        assert_eq!(st.services[0].name, "node");
        assert!(
            matches!(ok.restart("ghost"), Err(ControlError::Refused(m)) if m.contains("ghost"))
        );

        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("init.sock").display().to_string();
        let c3 = c.clone();
        let s2 = sock.clone();
        std::thread::spawn(move || serve_unix(c3, &s2));
        let local = Client::new(Endpoint::Unix(sock.clone().into()), None);
        let st = aergo_e2e_poll(|| local.status().ok());
        assert_eq!(st.services.len(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    fn aergo_e2e_poll<T>(mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn reboot_times_resolve_to_the_next_hh_mm_utc() {
        let now = 1_796_499_610; // 2026-12-05 19:40:10 UTC
        assert_eq!(reboot_time(false, None, now), Ok(None));
        assert_eq!(
            reboot_time(false, Some("21:00"), now),
            Ok(Some(1_796_504_400))
        );
        assert_eq!(
            reboot_time(false, Some("03:30"), now),
            Ok(Some(1_796_527_800))
        );
        let e = reboot_time(false, Some("25:00"), now).unwrap_err();
        assert!(e.contains("bad reboot time `25:00`"), "{e}");
        assert!(reboot_time(true, Some("03:30"), now)
            .unwrap_err()
            .contains("exclude each other"));
        assert!(reboot_time(false, Some("03:30"), 0)
            .unwrap_err()
            .contains("clock is not set"));
    }

    fn slot_ctx() -> crate::upgrade::SlotCtx {
        crate::upgrade::SlotCtx {
            boot: crate::upgrade::SlotBoot {
                running: "A".into(),
                uefi: true,
                disk: Some("/dev/vda".into()),
            },
            slots: aergo_os::slots::Slots::fresh("A", "1.0.0"),
            trial: None,
            busy: false,
            rpc_port: 0,
            reboot_at: None,
        }
    }

    #[test]
    fn a_scheduled_reboot_shows_in_status_and_can_be_cancelled() {
        let c = ctx();
        let mut sc = slot_ctx();
        sc.reboot_at = Some(1_796_527_800);
        *c.slots.lock() = Some(sc);
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("init.sock").display().to_string();
        let c2 = c.clone();
        let s2 = sock.clone();
        std::thread::spawn(move || serve_unix(c2, &s2));
        let local = Client::new(Endpoint::Unix(sock.into()), None);
        let st = aergo_e2e_poll(|| local.status().ok());
        assert_eq!(st.reboot_at, Some(1_796_527_800));
        let line = local.cancel_reboot().unwrap();
        assert!(line.contains("2026-12-06 03:30 UTC is cancelled"), "{line}");
        assert_eq!(local.status().unwrap().reboot_at, None);
        assert!(
            matches!(local.cancel_reboot(), Err(ControlError::Refused(m)) if m == "no reboot is scheduled")
        );
        // A bad time is refused before the bundle is read: nothing installed, no schedule.
        let e = local
            .upgrade(
                &mut &b"not a bundle"[..],
                12,
                false,
                false,
                Some("3h"),
                Duration::from_secs(5),
            )
            .unwrap_err();
        assert!(
            matches!(&e, ControlError::Refused(m) if m.starts_with("upgrade refused, nothing installed: bad reboot time `3h`")),
            "{e:?}"
        );
        assert_eq!(local.status().unwrap().reboot_at, None);
    }

    #[test]
    fn injected_control_panic_is_caught_and_counted() {
        let c = ctx();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c2 = c.clone();
        let h = std::thread::spawn(move || serve(&c2, b, false));
        let mut w = a.try_clone().unwrap();
        w.write_all(b"{\"v\":1,\"op\":\"inject_panic\",\"subsystem\":\"control\"}\n{\"v\":1,\"op\":\"status\"}\n")
            .unwrap();
        let mut r = BufReader::new(a);
        let mut l1 = String::new();
        r.read_line(&mut l1).unwrap();
        assert!(l1.contains("panic caught"), "{l1}");
        let mut l2 = String::new();
        r.read_line(&mut l2).unwrap();
        assert!(l2.contains("\"init_panics\":1"), "{l2}");
        drop(w);
        drop(r);
        h.join().unwrap().unwrap();
        assert!(c
            .logs
            .tail("init", 10)
            .iter()
            .any(|l| l.text.contains("caught panic")));
    }

    #[test]
    fn follow_streams_new_lines() {
        let c = ctx();
        c.logs.service("node", "stdout", "before");
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c2 = c.clone();
        std::thread::spawn(move || serve(&c2, b, false));
        let mut w = a.try_clone().unwrap();
        w.write_all(
            b"{\"v\":1,\"op\":\"logs\",\"service\":\"node\",\"lines\":5,\"follow\":true}\n",
        )
        .unwrap();
        let mut r = BufReader::new(a);
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(l.contains("before"), "{l}");
        c.logs.service("node", "stdout", "after");
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(
            l.contains("\"kind\":\"line\"") && l.contains("after"),
            "{l}"
        );
    }
}
