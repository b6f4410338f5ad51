#!/usr/bin/env bash
# Builds what is stale, builds the AERGO OS image and boots it in QEMU (UEFI firmware,
# serial console on this terminal, 2 GiB RAM). Chain data lives on a persistent disk
# (target/image/aergo-disk.img) so re-runs keep their chain; --fresh starts over.
# Host ports on 127.0.0.1: RPC 7845, control 7847, AergoFS 7848 (so `aergo chain` works).
# Quit QEMU with Ctrl-A X (or power off: `aergo os poweroff`).
# --boot-time N: instead, boot N times from a fresh 1 GiB copy of the image (serial to
# target/image/boot-time-K.log) and print QEMU start → first block (RPC height ≥ 1) each time,
# with when the console first showed the firmware's boot manager, the kernel's first line,
# `Run /init`, init's control token, the node's first log line and its `chain opened`.
# --release-key PUB: bake a release public key (`aergo-image keygen`) so `aergo os upgrade`
# accepts bundles signed with it; the disk is then attached without a bootindex (with one,
# OVMF rebuilds BootOrder and deletes the A/B slots' boot entries).
# --kernel embedded|debian|PATH: passed to aergo-image (default: aergo-image's);
# --image-arg ARG (repeatable): any other aergo-image flag, e.g. --image-arg
# --system-compression --image-arg xz.
# --qemu-arg ARG (repeatable): one more QEMU argument (experiments: --qemu-arg -machine
# --qemu-arg q35,sata=on). Each boot-time line also gives the CPU seconds QEMU used until
# the first block, which depend far less on the host's load than the wall-clock figure.
#
#   scripts/run-qemu.sh [--kvm] [--direct] [--fresh] [--config aergo.toml] [--no-build]
#                       [--mem MiB] [--disk-gib N] [--console ttyS0|tty1|auto] [--boot-time N]
#                       [--release-key release.pub] [--kernel embedded|debian|PATH]
#                       [--image-arg ARG]... [--qemu-arg ARG]...
set -euo pipefail
cd "$(dirname "$0")/.."

KVM=0 DIRECT=0 FRESH=0 BUILD=1 MEM=2048 DISK_GIB=4 CONFIG="" CONSOLE="auto" BOOT_TIME=0 RELEASE_KEY= KERNEL=
IMAGE_ARGS=() QEMU_ARGS=()
RPC_PORT="${AERGO_RPC_PORT:-7845}" CTL_PORT="${AERGO_CTL_PORT:-7847}" FS_PORT="${AERGO_FS_PORT:-7848}"
while [ $# -gt 0 ]; do
  case "$1" in
    --kvm) KVM=1 ;;
    --direct) DIRECT=1 ;;
    --fresh) FRESH=1 ;;
    --no-build) BUILD=0 ;;
    --config) CONFIG="$2"; shift ;;
    --mem) MEM="$2"; shift ;;
    --disk-gib) DISK_GIB="$2"; shift ;;
    --console) CONSOLE="$2"; shift ;;
    --boot-time) BOOT_TIME="$2"; shift ;;
    --release-key) RELEASE_KEY="$2"; shift ;;
    --kernel) KERNEL="$2"; shift ;;
    --image-arg) IMAGE_ARGS+=("$2"); shift ;;
    --qemu-arg) QEMU_ARGS+=("$2"); shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "run-qemu: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/aergo-target}"
BIN="$CARGO_TARGET_DIR/release"
OUT=target/image
mkdir -p "$OUT"

if [ "$BUILD" = 1 ]; then
  pkgs=(-p aergo-init -p aergo-image -p aergo-node -p aergo-cli)
  # AergoFS and the dashboard join the image when their packages build.
  for p in aergofs aergo-top; do
    if cargo metadata --no-deps --format-version 1 2>/dev/null | grep -q "\"name\":\"$p\""; then
      pkgs+=(-p "$p")
    fi
  done
  echo "run-qemu: cargo build --release ${pkgs[*]}"
  cargo build --release "${pkgs[@]}"
fi

[ "$FRESH" = 1 ] && rm -f "$OUT/aergo-disk.img" "$OUT/OVMF_VARS.fd"
img_args=(--bin-dir "$BIN" --out "$OUT/aergo-os.img" --console "$CONSOLE"
          --update-disk "$OUT/aergo-disk.img" --disk-gib "$DISK_GIB")
[ -n "$CONFIG" ] && img_args+=(--config "$CONFIG")
[ -n "$RELEASE_KEY" ] && img_args+=(--release-key "$RELEASE_KEY")
[ -n "$KERNEL" ] && img_args+=(--kernel "$KERNEL")
img_args+=("${IMAGE_ARGS[@]}")
"$BIN/aergo-image" "${img_args[@]}"

OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
[ -f "$OUT/OVMF_VARS.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$OUT/OVMF_VARS.fd"

accel=(-accel tcg)
if [ "$KVM" = 1 ]; then accel=(-accel kvm -cpu host); fi
# The disk is the only boot device (bootindex=0): OVMF connects and boots just it, no CD-ROM
# or network boot attempts.
disk=(-drive "file=$OUT/aergo-disk.img,format=raw,if=none,id=disk0"
      -device virtio-blk-pci,drive=disk0,bootindex=0)
[ -n "$RELEASE_KEY" ] && disk=(-drive "file=$OUT/aergo-disk.img,format=raw,if=none,id=disk0"
      -device virtio-blk-pci,drive=disk0)
boot=(-drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE"
      -drive "if=pflash,format=raw,file=$OUT/OVMF_VARS.fd")
if [ "$DIRECT" = 1 ]; then
  kernel="$OUT/vmlinuz"; [ -f "$OUT/vmlinux" ] && kernel="$OUT/vmlinux"   # PVH: no decompression
  # The services live on the disk's system partition: the disk stays attached (-kernel
  # takes boot index 0 itself).
  boot=(-kernel "$kernel" -initrd "$OUT/initramfs.img" -append "$(cat "$OUT/cmdline.txt")")
  disk=(-drive "file=$OUT/aergo-disk.img,format=raw,if=none,id=disk0"
        -device virtio-blk-pci,drive=disk0)
fi
# The dashboard on the VGA console needs a display; otherwise everything is on the serial line.
display=(-display none)
[ "$CONSOLE" = tty1 ] && display=(-vga std)

# sata=off: q35's built-in AHCI controller has no disk here (the disk is virtio); without
# it neither OVMF nor the kernel probes its six empty SATA ports (the kernel's probe holds
# `Run /init` back ~0.35 s under TCG). QEMU-only: the image keeps its AHCI driver.
qemu=(qemu-system-x86_64 -machine q35,sata=off "${accel[@]}" -m "$MEM" -smp 2 -nodefaults
      -device virtio-rng-pci -device i6300esb
      -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$RPC_PORT-:7845,hostfwd=tcp:127.0.0.1:$CTL_PORT-:7847,hostfwd=tcp:127.0.0.1:$FS_PORT-:7848"
      -device virtio-net-pci,netdev=n0,romfile= "${QEMU_ARGS[@]}")

if [ "$BOOT_TIME" -gt 0 ]; then
  # Boot-time measurement: a fresh disk (and firmware variables) each time, as on first boot.
  disk_args=("${disk[@]}")
  disk_args[1]="file=$OUT/boot-time-disk.img,format=raw,if=none,id=disk0"
  [ "$DIRECT" = 1 ] || boot[3]="if=pflash,format=raw,file=$OUT/boot-time-vars.fd"
  body='{"jsonrpc":"2.0","id":1,"method":"chain_info","params":{}}'
  for i in $(seq "$BOOT_TIME"); do
    cp --sparse=always "$OUT/aergo-os.img" "$OUT/boot-time-disk.img"
    truncate -s 1G "$OUT/boot-time-disk.img"
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$OUT/boot-time-vars.fd"
    rm -f "$OUT/boot-time-$i.log"
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    "${qemu[@]}" -display none -serial "file:$OUT/boot-time-$i.log" -monitor none \
      "${boot[@]}" "${disk_args[@]}" </dev/null >/dev/null 2>&1 &
    pid=$!
    took="" marks="" cpu=""
    declare -A seen=()
    while kill -0 "$pid" 2>/dev/null; do
      now=$(date +%s.%N)
      el=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
      if awk -v e="$el" 'BEGIN { exit !(e > 180) }'; then break; fi
      # Milestones on the serial console, stamped when first seen (±0.1 s).
      for m in "boot manager:BdsDxe: starting" "kernel:Linux version" "/init:Run /init" \
               "token:control token" "node log:node: " "chain:chain opened"; do
        name=${m%%:*} pat=${m#*:}
        if [ -z "${seen[$name]:-}" ] && grep -aq "$pat" "$OUT/boot-time-$i.log" 2>/dev/null; then
          seen[$name]=1; marks="$marks, $name $el s"
        fi
      done
      if curl -s -m 1 -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$RPC_PORT/" 2>/dev/null \
          | grep -Eq '"height":[1-9]'; then
        took=$el
        # utime + stime of QEMU (all its threads), in clock ticks.
        cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || true)
        break
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset seen
    echo "run-qemu: boot $i: QEMU start → first block ${took:-none within 180} s${cpu:+ (QEMU CPU $cpu s)} (load average $load${marks})"
  done
  rm -f "$OUT/boot-time-disk.img" "$OUT/boot-time-vars.fd"
  exit 0
fi

echo "run-qemu: RPC http://127.0.0.1:$RPC_PORT  control 127.0.0.1:$CTL_PORT  AergoFS http://127.0.0.1:$FS_PORT"
echo "run-qemu: serial console below; Ctrl-A X quits QEMU"
exec "${qemu[@]}" "${display[@]}" -serial mon:stdio "${boot[@]}" "${disk[@]}"
