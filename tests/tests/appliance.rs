//! QEMU tests of the AERGO OS appliance (software emulation only, never KVM).
//!
//! - `appliance_uefi_boot_supervise_shutdown`: builds the disk image with `aergo-image`,
//!   boots it under OVMF from a 1 GiB copy (so init grows the data partition), asserts blocks
//!   over RPC through a host port forward, exercises the control protocol over TCP (token
//!   refused/accepted), kills the node through it and asserts the restart and that the chain
//!   resumed at the same height, injects panics into init, then presses the ACPI power button
//!   through QMP and asserts a clean power-off (QEMU exits 0, `/data` unmounted, the ext4
//!   journal clean).
//! - `appliance_power_cut_direct_boot`: direct kernel boot (the same kernel, initramfs and
//!   command line the UKI holds; the kernel as the uncompressed PVH `vmlinux` aergo-image
//!   extracts, which skips firmware and decompression) with the first block due within 15 s
//!   of QEMU's start (asserted unless the host is saturated: load > 2 × cores);
//!   kills QEMU mid-production, asserts the journal was left dirty, boots again and asserts
//!   the node starts and every finalized block is still there with the same hash.
//!
//! The VMs run one at a time (a lock), with the serial console in a file. Under `CI=true` a
//! missing qemu/OVMF/kernel fails the test; elsewhere it is reported and the test returns.

use aergo_e2e::{bin, ci, free_port, poll, target_dir, KillOnDrop};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Whether qemu, OVMF and a kernel are installed; under CI their absence is an error.
fn tools_present() -> Result<bool> {
    let mut missing = Vec::new();
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        missing.push("qemu-system-x86_64");
    }
    if !Path::new(OVMF_CODE).exists() {
        missing.push(OVMF_CODE);
    }
    let kernel = std::fs::read_dir("/boot")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
        .unwrap_or(false);
    if !kernel {
        missing.push("/boot/vmlinuz-*");
    }
    if missing.is_empty() {
        return Ok(true);
    }
    if ci() {
        bail!("missing {missing:?}: run scripts/setup.sh");
    }
    eprintln!("appliance test not run: missing {missing:?} (run scripts/setup.sh)");
    Ok(false)
}

/// Builds the image into `dir` with the workspace's release binaries.
fn build_image(dir: &Path, config: Option<&str>) -> Result<PathBuf> {
    let image = bin("aergo-image")?;
    bin("aergo-init")?;
    // The real node must be in the image (AERGO_APPLIANCE_BIN_DIR overrides for development).
    let bin_dir = match std::env::var_os("AERGO_APPLIANCE_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            bin("aergo-node")?;
            target_dir()?
        }
    };
    let out = dir.join("aergo-os.img");
    let mut cmd = Command::new(image);
    cmd.arg("--bin-dir").arg(&bin_dir).arg("--out").arg(&out);
    if let Some(text) = config {
        let path = dir.join("baked.toml");
        std::fs::write(&path, text)?;
        cmd.arg("--config").arg(path);
    }
    let o = cmd.output().context("running aergo-image")?;
    let log = String::from_utf8_lossy(&o.stderr);
    eprintln!("{log}");
    if !o.status.success() {
        bail!("aergo-image failed: {log}");
    }
    Ok(out)
}

/// A working copy of the image grown to `size` bytes (a bigger "disk").
fn disk_copy(image: &Path, dir: &Path, size: u64) -> Result<PathBuf> {
    let disk = dir.join("disk.img");
    std::fs::copy(image, &disk)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)?
        .set_len(size)?;
    Ok(disk)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Boot {
    Uefi,
    Direct,
}

struct Vm {
    child: KillOnDrop,
    serial: PathBuf,
    qmp: PathBuf,
    rpc: u16,
    ctl: u16,
    started: Instant,
}

impl Vm {
    fn boot(dir: &Path, disk: &Path, mode: Boot, tag: &str) -> Result<Vm> {
        let serial = dir.join(format!("serial-{tag}.log"));
        let qmp = dir.join(format!("qmp-{tag}.sock"));
        let _ = std::fs::remove_file(&qmp);
        let rpc = free_port()?;
        let ctl = free_port()?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-machine", "q35", "-accel", "tcg", "-m", "2048", "-smp", "2"])
            .args(["-display", "none", "-vga", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", disk.display()))
            .args(["-device", "virtio-rng-pci", "-device", "i6300esb"])
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{rpc}-:7845,hostfwd=tcp:127.0.0.1:{ctl}-:7847"
            ))
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="]);
        match mode {
            Boot::Uefi => {
                let vars = dir.join(format!("vars-{tag}.fd"));
                std::fs::copy(OVMF_VARS, &vars)?;
                cmd.arg("-drive")
                    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
                    .arg("-drive")
                    .arg(format!("if=pflash,format=raw,file={}", vars.display()));
            }
            Boot::Direct => {
                let img_dir = disk.parent().context("disk has no folder")?;
                let cmdline = std::fs::read_to_string(img_dir.join("cmdline.txt"))?;
                // The uncompressed PVH kernel when aergo-image could extract it.
                let pvh = img_dir.join("vmlinux");
                let kernel = if pvh.exists() {
                    pvh
                } else {
                    img_dir.join("vmlinuz")
                };
                cmd.arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(img_dir.join("initramfs.img"))
                    .arg("-append")
                    .arg(cmdline.trim());
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("qemu-{tag}.out")))?)
            .stderr(std::fs::File::create(dir.join(format!("qemu-{tag}.err")))?);
        let started = Instant::now();
        let child = KillOnDrop::spawn(&mut cmd)?;
        Ok(Vm {
            child,
            serial,
            qmp,
            rpc,
            ctl,
            started,
        })
    }

    fn serial_text(&self) -> String {
        std::fs::read(&self.serial)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    fn serial_tail(&self) -> String {
        let t = self.serial_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn rpc(&self, method: &str, params: Value) -> Result<Value> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.rpc))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let json_start = resp.find("\r\n\r\n").context("no HTTP body")? + 4;
        let v: Value = serde_json::from_str(&resp[json_start..])
            .with_context(|| format!("bad RPC response: {resp}"))?;
        if let Some(e) = v.get("error") {
            bail!("RPC {method} error: {e}");
        }
        Ok(v["result"].clone())
    }

    fn chain_info(&self) -> Result<Value> {
        self.rpc("chain_info", json!({}))
    }

    fn height(&self) -> Result<u64> {
        self.chain_info()?["height"]
            .as_u64()
            .context("chain_info has no height")
    }

    fn block_hash(&self, height: u64) -> Result<String> {
        Ok(self.rpc("block", json!({"height": height}))?["hash"]
            .as_str()
            .context("block has no hash")?
            .to_string())
    }

    fn token(&self) -> Result<String> {
        poll(
            "control token on the console",
            Duration::from_secs(120),
            || {
                let text = self.serial_text();
                Ok(text.lines().find_map(|l| {
                    let rest = l.split("control token: ").nth(1)?;
                    let tok: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                    (tok.len() == 64).then_some(tok)
                }))
            },
        )
    }

    /// One control request over the forwarded TCP port.
    fn control(&self, token: Option<&str>, op: Value) -> Result<Value> {
        let mut req = op;
        req["v"] = json!(1);
        if let Some(t) = token {
            req["token"] = json!(t);
        }
        let s = TcpStream::connect(("127.0.0.1", self.ctl))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = s.try_clone()?;
        writeln!(w, "{req}")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("bad control reply `{line}`"))?;
        Ok(v)
    }

    fn status(&self, token: &str) -> Result<Value> {
        let v = self.control(Some(token), json!({"op": "status"}))?;
        if v["kind"] != "status" {
            bail!("status failed: {v}");
        }
        Ok(v)
    }

    fn qmp(&self, command: &str) -> Result<()> {
        let s = std::os::unix::net::UnixStream::connect(&self.qmp)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line)?; // greeting
        writeln!(w, "{}", json!({"execute": "qmp_capabilities"}))?;
        line.clear();
        r.read_line(&mut line)?;
        writeln!(w, "{}", json!({"execute": command}))?;
        loop {
            line.clear();
            r.read_line(&mut line)?;
            if line.contains("\"return\"") {
                return Ok(());
            }
            if line.contains("\"error\"") || line.is_empty() {
                bail!("qmp {command}: {line}");
            }
        }
    }
}

fn service<'a>(status: &'a Value, name: &str) -> Result<&'a Value> {
    status["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .with_context(|| format!("no service {name} in {status}"))
}

/// Reads the data partition's ext4 superblock from a disk image: (needs_recovery, blocks).
fn data_superblock(disk: &Path) -> Result<(bool, u64)> {
    let mut f = std::fs::File::open(disk)?;
    let mut hdr = [0u8; 512];
    f.seek(SeekFrom::Start(512))?;
    f.read_exact(&mut hdr)?;
    if &hdr[0..8] != b"EFI PART" {
        bail!("no GPT");
    }
    let u32le =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64le =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let entries_lba = u64le(&hdr, 72);
    let n = u32le(&hdr, 80) as usize;
    let size = u32le(&hdr, 84) as usize;
    let mut entries = vec![0u8; n * size];
    f.seek(SeekFrom::Start(entries_lba * 512))?;
    f.read_exact(&mut entries)?;
    for e in entries.chunks(size) {
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        if String::from_utf16_lossy(&name) == "AERGO-DATA" {
            let first = u64le(e, 32);
            let mut sb = [0u8; 1024];
            f.seek(SeekFrom::Start(first * 512 + 1024))?;
            f.read_exact(&mut sb)?;
            if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
                bail!("AERGO-DATA holds no ext4");
            }
            let incompat = u32le(&sb, 0x60);
            let blocks = u64::from(u32le(&sb, 4)) | (u64::from(u32le(&sb, 0x150)) << 32);
            return Ok((incompat & 0x4 != 0, blocks));
        }
    }
    bail!("no AERGO-DATA partition")
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn wait_first_block(vm: &Vm, limit: Duration) -> Result<Duration> {
    poll("the first block over RPC", limit, || {
        Ok(vm.height().ok().filter(|h| *h >= 1))
    })
    .with_context(|| format!("serial console:\n{}", vm.serial_tail()))?;
    Ok(vm.started.elapsed())
}

#[test]
fn appliance_uefi_boot_supervise_shutdown() -> Result<()> {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !tools_present()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let image = build_image(dir.path(), None)?;
    let image_len = std::fs::metadata(&image)?.len();
    assert!(
        image_len <= 150_000_000,
        "image is {image_len} bytes (> 150 MB)"
    );
    let (_, blocks_before) = data_superblock(&image)?;
    let disk = disk_copy(&image, dir.path(), 1 << 30)?;

    let mut vm = Vm::boot(dir.path(), &disk, Boot::Uefi, "uefi")?;
    let first = wait_first_block(&vm, Duration::from_secs(180))?;
    eprintln!(
        "appliance: UEFI boot, first block {:.1} s after QEMU started",
        first.as_secs_f64()
    );
    let h0 = vm.height()?;
    poll("blocks being produced", Duration::from_secs(30), || {
        Ok((vm.height()? >= h0 + 2).then_some(()))
    })?;

    // Control over TCP: refused without the token, served with it.
    let token = vm.token()?;
    let anon = vm.control(None, json!({"op": "status"}))?;
    assert_eq!(anon["kind"], "error", "{anon}");
    assert!(
        anon["message"].as_str().unwrap_or("").contains("token"),
        "{anon}"
    );
    let wrong = vm.control(Some(&"0".repeat(64)), json!({"op": "status"}))?;
    assert_eq!(wrong["kind"], "error", "{wrong}");
    // init flips the node to `running` when its readiness probe answers (polled).
    let st = poll(
        "init reports the node running",
        Duration::from_secs(30),
        || {
            let st = vm.status(&token)?;
            Ok((service(&st, "node")?["state"] == "running").then_some(st))
        },
    )?;
    let node = service(&st, "node")?;
    assert_eq!(node["restarts"], 0);
    // AergoFS and the dashboard run too when they were built (a missing one is `missing`).
    let bin_dir = match std::env::var_os("AERGO_APPLIANCE_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => target_dir()?,
    };
    for (name, binary) in [("aergofs", "aergofs"), ("dashboard", "aergo-top")] {
        let want = if bin_dir.join(binary).exists() {
            "running"
        } else {
            "missing"
        };
        let got = poll(&format!("{name} {want}"), Duration::from_secs(60), || {
            let st = vm.status(&token)?;
            let s = service(&st, name)?["state"].clone();
            Ok((s == want).then_some(s))
        });
        assert!(
            got.is_ok(),
            "{name}: {got:?}; status {}",
            vm.status(&token)?
        );
    }
    let sys = &st["system"];
    assert_eq!(sys["data_mounted"], true, "{st}");
    // init grew the 64 MiB data partition and its filesystem to fill the 1 GiB disk.
    assert!(
        sys["data_total_bytes"].as_u64().unwrap_or(0) > 700 << 20,
        "{st}"
    );
    assert!(
        sys["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "10.0.2.15/24")),
        "{st}"
    );
    assert_eq!(sys["watchdog"], true, "{st}");
    eprintln!(
        "appliance: init RSS {} KiB; /data {} MiB",
        sys["init_rss_kib"],
        sys["data_total_bytes"].as_u64().unwrap_or(0) >> 20
    );

    // Supervision: kill the node; init restarts it and the chain resumes from the same height.
    let before = vm.height()?;
    let hash_before = vm.block_hash(before)?;
    let old_pid = node["pid"].clone();
    let r = vm.control(
        Some(&token),
        json!({"op": "signal", "service": "node", "signal": 9}),
    )?;
    assert_eq!(r["kind"], "ack", "{r}");
    let restarted = poll("node restarted by init", Duration::from_secs(60), || {
        let st = vm.status(&token)?;
        let n = service(&st, "node")?.clone();
        Ok(
            (n["restarts"].as_u64() >= Some(1) && n["state"] == "running" && n["pid"] != old_pid)
                .then_some(n),
        )
    })?;
    assert_eq!(restarted["last_exit"]["signal"], 9, "{restarted}");
    let after = poll(
        "the chain past the kill height",
        Duration::from_secs(60),
        || Ok(vm.height().ok().filter(|h| *h > before)),
    )?;
    assert!(after > before);
    assert_eq!(
        vm.block_hash(before)?,
        hash_before,
        "block {before} changed across the restart"
    );

    // A panic in an init subsystem is caught; init and the chain keep going.
    let p = vm.control(
        Some(&token),
        json!({"op": "inject_panic", "subsystem": "control"}),
    )?;
    assert_eq!(p["kind"], "error", "{p}");
    let p = vm.control(
        Some(&token),
        json!({"op": "inject_panic", "subsystem": "supervisor"}),
    )?;
    assert_eq!(p["kind"], "ack", "{p}");
    poll("init to count both panics", Duration::from_secs(20), || {
        let st = vm.status(&token)?;
        Ok((st["system"]["init_panics"].as_u64() >= Some(2)).then_some(()))
    })?;
    let h = vm.height()?;
    poll("blocks after the panics", Duration::from_secs(30), || {
        Ok((vm.height()? > h).then_some(()))
    })?;
    let logs = vm.control(
        Some(&token),
        json!({"op": "logs", "service": "node", "lines": 20}),
    )?;
    assert!(
        !logs["lines"]
            .as_array()
            .map(|a| a.is_empty())
            .unwrap_or(true),
        "{logs}"
    );

    // ACPI power button: services stop, /data unmounts, the machine powers off.
    let t = Instant::now();
    vm.qmp("system_powerdown")?;
    let status = vm
        .child
        .wait_timeout(Duration::from_secs(90))
        .with_context(|| format!("no power-off; console:\n{}", vm.serial_tail()))?;
    eprintln!(
        "appliance: power-off took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(status.success(), "qemu exited with {status}");
    let text = vm.serial_text();
    assert!(
        text.contains("power button: Poweroff requested"),
        "{}",
        vm.serial_tail()
    );
    assert!(
        text.contains("all services stopped"),
        "{}",
        vm.serial_tail()
    );
    assert!(
        text.contains("/data unmounted cleanly"),
        "{}",
        vm.serial_tail()
    );
    let (dirty, blocks_after) = data_superblock(&disk)?;
    assert!(
        !dirty,
        "ext4 journal needs recovery after a clean power-off"
    );
    assert!(
        blocks_after > blocks_before * 8,
        "filesystem was not grown: {blocks_before} → {blocks_after}"
    );
    Ok(())
}

const STATIC_CONFIG: &str = r#"
[node]
dev = true
data_dir = "/data/chain"
rpc_addr = "0.0.0.0:7845"

[fs]
dir = "/data/fs"
addr = "0.0.0.0:7848"

[system]
hostname = "bp-cut-test"

[[system.interfaces]]
name = "eth0"
address = "10.0.2.15/24"
gateway = "10.0.2.2"
"#;

#[test]
fn appliance_power_cut_direct_boot() -> Result<()> {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !tools_present()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    // This image bakes its own config: static address (QEMU's user network forwards to
    // 10.0.2.15) and a hostname, so `aergo-image --config` and static networking are covered.
    let image = build_image(dir.path(), Some(STATIC_CONFIG))?;
    let disk = disk_copy(&image, dir.path(), 512 << 20)?;

    // Give a machine still busy with the previous test binary up to a minute to settle, so
    // the timing below measures the boot, not the neighbours (proceeds either way).
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let _ = poll("the host to settle", Duration::from_secs(60), || {
        Ok((load_average() <= 2.0 * cores).then_some(()))
    });
    let load_before = load_average();
    let vm = Vm::boot(dir.path(), &disk, Boot::Direct, "first")?;
    let first = wait_first_block(&vm, Duration::from_secs(60))?;
    eprintln!(
        "appliance: direct kernel boot, first block {:.1} s after QEMU started",
        first.as_secs_f64()
    );
    // The 15 s floor is defined for a machine that is not already saturated: software
    // emulation time scales with the host's free CPU. Past twice as many runnable tasks as
    // cores (other builds running), the figure is reported, not asserted.
    let load = load_average();
    if load_before <= 2.0 * cores && load <= 2.0 * cores {
        assert!(
            first <= Duration::from_secs(15),
            "first block took {first:?} (> 15 s) under TCG (load {load_before:.1} → {load:.1})"
        );
    } else {
        eprintln!(
            "appliance: 15 s floor not asserted: host overloaded (load {load_before:.1} → {load:.1} on {cores} cores)"
        );
    }
    let fin = poll("five finalized blocks", Duration::from_secs(60), || {
        let ci = vm.chain_info()?;
        Ok(ci["finalized_height"].as_u64().filter(|f| *f >= 5))
    })?;
    let fin_hash = vm.block_hash(fin)?;
    let token = vm.token()?;
    let st = vm.status(&token)?;
    assert_eq!(st["system"]["hostname"], "bp-cut-test", "{st}");
    assert!(
        st["system"]["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "10.0.2.15/24")),
        "{st}"
    );
    assert!(
        vm.serial_text().contains("eth0: 10.0.2.15/24 (static)"),
        "{}",
        vm.serial_tail()
    );

    // Power cut: SIGKILL QEMU while blocks are being produced.
    drop(vm);
    let (dirty, _) = data_superblock(&disk)?;
    assert!(dirty, "the journal should need recovery after a power cut");

    let vm = Vm::boot(dir.path(), &disk, Boot::Direct, "second")?;
    wait_first_block(&vm, Duration::from_secs(90))?;
    let h = poll(
        "the chain past the finalized height",
        Duration::from_secs(60),
        || Ok(vm.height().ok().filter(|h| *h > fin)),
    )?;
    assert!(h > fin);
    assert_eq!(
        vm.block_hash(fin)?,
        fin_hash,
        "finalized block {fin} changed after the power cut"
    );
    let ci = vm.chain_info()?;
    assert!(ci["finalized_height"].as_u64().unwrap_or(0) >= fin, "{ci}");
    // Same token (persisted on /data); the node runs as a fresh start, not a restart.
    assert_eq!(vm.token()?, token);
    // init flips the node to `running` once its readiness probe answers (polled).
    poll(
        "init reports the node running",
        Duration::from_secs(30),
        || {
            let st = vm.status(&token)?;
            Ok((service(&st, "node")?["state"] == "running").then_some(()))
        },
    )?;

    // Power off through the control protocol this time.
    let r = vm.control(Some(&token), json!({"op": "poweroff"}))?;
    assert_eq!(r["kind"], "ack", "{r}");
    let mut vm = vm;
    let status = vm
        .child
        .wait_timeout(Duration::from_secs(90))
        .with_context(|| format!("no power-off; console:\n{}", vm.serial_tail()))?;
    assert!(status.success(), "qemu exited with {status}");
    let (dirty, _) = data_superblock(&disk)?;
    assert!(!dirty, "journal dirty after a clean power-off");
    Ok(())
}
