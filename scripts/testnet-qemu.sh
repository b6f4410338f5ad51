#!/usr/bin/env bash
# Boots N AERGO OS appliances in QEMU that form one DPoS chain.
#
#   scripts/testnet-qemu.sh N [--uefi] [--kvm] [--check] [--no-build] [--mem MiB] [--disk-gib G]
#
# `aergo testnet init --bps N --hosts 10.77.0.2,…` writes the keys, the genesis and one
# aergo.toml per appliance; each image is built by `aergo-image --config` with its node key
# and the genesis baked into /data/etc. Every VM gets two NICs:
#   - "mesh" (MAC 52:54:00:77:00:0i, static 10.77.0.(i+1)/24): a private segment between the
#     VMs that stays on this host — each QEMU sends its frames over UDP on 127.0.0.1 to a
#     small hub process that repeats them to the other VMs (no multicast, no bridge, no root);
#   - "up" (MAC 52:54:00:77:01:0i, DHCP): QEMU user networking with host port forwards:
#     VM i's RPC on 127.0.0.1:(27845 + 10·(i−1)), so `aergo --rpc http://127.0.0.1:27845 chain`.
# Serial consoles (the dashboard) go to target/testnet-qemu/nodeI/serial.log.
# Clocks: a small SNTP responder on this host's loopback is every VM's `ntp_servers`
# (10.0.2.2 through QEMU's user network), so their DPoS slots agree.
# --check: exit 0 once all share a final (LIB) block above height 2, every appliance reports
# the others as peers and its clock, set by SNTP, reads within 500 ms of this host's; then
# power them off; non-zero after a deadline.
# Each disk is the image grown (sparse) to --disk-gib (default 1), so init grows /data into
# it on first boot as on a server; the image's own 32 MiB data partition is too small for a
# node (RocksDB preallocates tens of MiB per write-ahead log).
# Direct kernel boot by default (fastest under software emulation); --uefi boots the disk
# images through OVMF like a server would.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-}"
case "$N" in ''|*[!0-9]*) sed -n '2,24p' "$0"; exit 2 ;; esac
shift
[ "$N" -ge 1 ] && [ "$N" -le 9 ] || { echo "testnet-qemu: N must be 1..9" >&2; exit 2; }
UEFI=0 KVM=0 CHECK=0 BUILD=1 MEM=1024 DISK_GIB=1
while [ $# -gt 0 ]; do
  case "$1" in
    --uefi) UEFI=1 ;;
    --kvm) KVM=1 ;;
    --check) CHECK=1 ;;
    --no-build) BUILD=0 ;;
    --mem) MEM="$2"; shift ;;
    --disk-gib)
      DISK_GIB="${2:-}"; shift
      case "$DISK_GIB" in ''|*[!0-9]*|0) echo "testnet-qemu: --disk-gib takes a whole number of GiB ≥ 1" >&2; exit 2 ;; esac ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "testnet-qemu: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/aergo-target}"
BIN="$CARGO_TARGET_DIR/release"
OUT=target/testnet-qemu
if [ "$BUILD" = 1 ]; then
  ./scripts/setup.sh
  cargo build --release -p aergo-init -p aergo-image -p aergo-node -p aergo-cli -p aergofs -p aergo-top
fi
command -v python3 >/dev/null || { echo "testnet-qemu: python3 is needed for the hub" >&2; exit 1; }

rm -rf "$OUT"; mkdir -p "$OUT"
hosts=""; for i in $(seq 1 "$N"); do hosts="$hosts${hosts:+,}10.77.0.$((i + 1))"; done
# Genesis a little ahead: slots start once the appliances had time to boot.
delay=$(( UEFI ? 90000 : 40000 ))
"$BIN/aergo" testnet init --bps "$N" --out "$OUT/tn" --hosts "$hosts" \
  --interval-ms 1000 --round-slots 30 --start-delay-ms "$delay"

free_udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
NTP_PORT=$(free_udp_port)

for i in $(seq 1 "$N"); do
  d="$OUT/node$i"; mkdir -p "$d"
  mesh_mac=$(printf '52:54:00:77:00:%02x' "$i"); up_mac=$(printf '52:54:00:77:01:%02x' "$i")
  # Both NICs by MAC: the mesh one static, the host-forward one by DHCP (default route).
  sed "s|^interfaces = \[\]|interfaces = [{ name = \"$mesh_mac\", address = \"10.77.0.$((i + 1))/24\" }, { name = \"$up_mac\", address = \"dhcp\" }]|" \
    "$OUT/tn/node$i/aergo.toml" > "$d/aergo.toml"
  grep -q "$mesh_mac" "$d/aergo.toml" || { echo "testnet-qemu: could not set interfaces in $d/aergo.toml" >&2; exit 1; }
  # DPoS slots need agreeing clocks: the VMs take this host's time by SNTP (QEMU's user
  # network maps 10.0.2.2 to this host's loopback, where the responder below listens).
  sed -i "s|^ntp_servers = \[\]|ntp_servers = [\"10.0.2.2:$NTP_PORT\"]|" "$d/aergo.toml"
  grep -q "10.0.2.2:$NTP_PORT" "$d/aergo.toml" || { echo "testnet-qemu: could not set ntp_servers in $d/aergo.toml" >&2; exit 1; }
  echo "testnet-qemu: building image $i/$N"
  "$BIN/aergo-image" --bin-dir "$BIN" --config "$d/aergo.toml" --out "$d/aergo-os.img" \
    --etc-file "$OUT/tn/genesis.json=genesis.json" --etc-file "$OUT/tn/node$i/node.key=node.key" \
    --console ttyS0 > "$d/image.log" 2>&1 || { cat "$d/image.log"; exit 1; }
  truncate -s "${DISK_GIB}G" "$d/aergo-os.img"
done

# The hub: repeats every UDP datagram (an Ethernet frame) from one VM to all the others.
HUB_PORT=$(free_udp_port)
python3 - "$HUB_PORT" "$N" > "$OUT/hub.log" 2>&1 <<'EOF' &
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
vms = [("127.0.0.1", port + 1 + i) for i in range(n)]
while True:
    data, src = s.recvfrom(65536)
    for vm in vms:
        if vm != src:
            s.sendto(data, vm)
EOF
HUB=$!
# A minimal SNTP responder (RFC 4330, stratum 2) for the VMs, on this host's loopback.
python3 - "$NTP_PORT" > "$OUT/sntp.log" 2>&1 <<'NTPEOF' &
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
def ntp(t):
    return (int(t) + 2208988800) << 32 | int((t % 1) * 2**32)
while True:
    req, src = s.recvfrom(512)
    if len(req) < 48 or req[0] & 7 != 3:
        continue
    rx = ntp(time.time())
    # LI 0, version 4, mode 4 (server); stratum 2; poll 2^6 s; precision 2^-20 s; then
    # root delay, dispersion, reference id; reference, originate (the client's transmit
    # time, echoed), receive and transmit timestamps.
    head = struct.pack("!BBbb", 0x24, 2, 6, -20) + bytes(12)
    s.sendto(head + struct.pack("!Q", rx) + req[40:48] + struct.pack("!QQ", rx, ntp(time.time())), src)
    print("answered", src[0], flush=True)
NTPEOF
SNTP=$!
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$HUB" 2>/dev/null || true
  kill "$SNTP" 2>/dev/null || true
}
trap cleanup EXIT

accel=(-accel tcg); [ "$KVM" = 1 ] && accel=(-accel kvm -cpu host)
for i in $(seq 1 "$N"); do
  d="$OUT/node$i"
  mesh_mac=$(printf '52:54:00:77:00:%02x' "$i"); up_mac=$(printf '52:54:00:77:01:%02x' "$i")
  rpc=$((27845 + 10 * (i - 1)))
  if [ "$UEFI" = 1 ]; then
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$d/OVMF_VARS.fd"
    boot=(-drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
          -drive "if=pflash,format=raw,file=$d/OVMF_VARS.fd"
          -drive "file=$d/aergo-os.img,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,bootindex=0)
  else
    kernel="$d/vmlinuz"; [ -f "$d/vmlinux" ] && kernel="$d/vmlinux"
    boot=(-kernel "$kernel" -initrd "$d/initramfs.img" -append "$(cat "$d/cmdline.txt")"
          -drive "file=$d/aergo-os.img,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0)
  fi
  qemu-system-x86_64 -machine q35,sata=off "${accel[@]}" -m "$MEM" -smp 1 -nodefaults -display none \
    -serial "file:$d/serial.log" "${boot[@]}" \
    -netdev "socket,id=mesh,udp=127.0.0.1:$HUB_PORT,localaddr=127.0.0.1:$((HUB_PORT + i))" \
    -device "virtio-net-pci,netdev=mesh,mac=$mesh_mac,romfile=" \
    -netdev "user,id=up,hostfwd=tcp:127.0.0.1:$rpc-:7845" \
    -device "virtio-net-pci,netdev=up,mac=$up_mac,romfile=" &
  pids+=($!)
  echo "testnet-qemu: appliance $i: RPC http://127.0.0.1:$rpc  mesh 10.77.0.$((i + 1))  serial $d/serial.log"
done

alive() {
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "testnet-qemu: QEMU of appliance $((i + 1)) exited (port in use? see above)" >&2; exit 1; }
  done
}

status() {
  for i in $(seq 1 "$N"); do
    "$BIN/aergo" --rpc "http://127.0.0.1:$((27845 + 10 * (i - 1)))" --json node consensus 2>/dev/null \
      | python3 -c 'import json,sys,time; v=json.load(sys.stdin); print(v["height"], v["lib_height"], v["lib_hash"] or "-", "early=%s rejected=%s clock%+dms" % (v["early_blocks"], v["rejected_blocks"], v["now_ms"] - time.time() * 1000))' 2>/dev/null \
      || echo "- - -"
  done
}

if [ "$CHECK" = 0 ]; then
  echo "testnet-qemu: Ctrl-C stops them; e.g. aergo --rpc http://127.0.0.1:27845 node consensus"
  while true; do sleep 10; alive; echo "height lib lib-hash early/rejected blocks clock-vs-host per appliance:"; status; done
fi

deadline=$(( $(date +%s) + 600 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 5
  alive
  s=$(status)
  echo "$s" | tr '\n' ' '; echo
  # Every appliance has a LIB above 2, and they agree on the block at the lowest LIB.
  libs=$(echo "$s" | awk '{print $2}')
  if echo "$libs" | grep -qv '^[0-9]*$'; then continue; fi
  low=$(echo "$libs" | sort -n | head -1)
  [ "$low" -gt 2 ] || continue
  hashes=""
  for i in $(seq 1 "$N"); do
    h=$("$BIN/aergo" --rpc "http://127.0.0.1:$((27845 + 10 * (i - 1)))" --json block "$low" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["hash"])') || continue 2
    hashes="$hashes$h\n"
  done
  [ "$(printf "$hashes" | sort -u | wc -l)" = 1 ] || continue
  # Every appliance has the others as peers, asked this host's SNTP responder for the time,
  # and its clock reads within 500 ms of this host's (the RPC round trip included).
  asked=$(grep -c '^answered' "$OUT/sntp.log" || true)
  [ "$asked" -ge "$N" ] || { echo "testnet-qemu: the SNTP responder answered $asked of $N appliances"; continue; }
  for i in $(seq 1 "$N"); do
    url="http://127.0.0.1:$((27845 + 10 * (i - 1)))"
    peers=$("$BIN/aergo" --rpc "$url" --json node peers 2>/dev/null \
      | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
    [ "$peers" -ge $((N - 1)) ] || { echo "testnet-qemu: appliance $i has $peers peers"; continue 2; }
    off=$("$BIN/aergo" --rpc "$url" --json node consensus 2>/dev/null \
      | python3 -c 'import json,sys,time; print(int(abs(json.load(sys.stdin)["now_ms"] - time.time() * 1000)))' 2>/dev/null || echo 99999)
    [ "$off" -le 500 ] || { echo "testnet-qemu: appliance $i's clock is $off ms off this host's"; continue 2; }
  done
  echo "testnet-qemu: $N appliances share final block $low ($(printf "$hashes" | head -1)), each with $((N - 1)) peer(s) and its clock within 500 ms of this host's (SNTP)"
  exit 0
done
echo "testnet-qemu: no common LIB within the deadline; serial logs in $OUT/node*/serial.log" >&2
exit 1
