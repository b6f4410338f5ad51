#!/usr/bin/env bash
# Installs what building, testing and booting AERGO OS need on Debian 12 (idempotent:
# only missing packages are installed, with one `apt-get update` first).
#   scripts/setup.sh
set -euo pipefail

PACKAGES=(
  # building the workspace (RocksDB via Debian's library, LLVM for AergoSQL, bindgen)
  build-essential pkg-config clang libclang-dev librocksdb-dev libzstd-dev
  llvm-16-dev libpolly-16-dev
  # the appliance image: kernel + modules, UKI stub, ESP (FAT), system partition (squashfs),
  # ext4, compression, objcopy/strip
  linux-image-amd64 systemd-boot-efi mtools dosfstools gdisk squashfs-tools e2fsprogs zstd xz-utils
  gzip cpio kmod binutils
  # the embedded kernel (aergo-image --kernel embedded): Debian's kernel source and its build
  # tools (build-essential above)
  linux-source-6.1 bc bison flex libelf-dev libssl-dev
  # booting it (curl: run-qemu.sh --boot-time polls the node's RPC; python3: the UDP hub of
  # testnet-qemu.sh's private segment)
  qemu-system-x86 ovmf curl python3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust (rustup, or Debian's cargo) first" >&2
  exit 1
fi
# Sanity: the pieces aergo-image and the QEMU tests look for.
for f in /usr/lib/systemd/boot/efi/linuxx64.efi.stub /usr/share/OVMF/OVMF_CODE_4M.fd; do
  [ -e "$f" ] || { echo "setup: $f is missing" >&2; exit 1; }
done
ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "setup: no kernel in /boot" >&2; exit 1; }
[ -e /usr/src/linux-source-6.1.tar.xz ] || { echo "setup: /usr/src/linux-source-6.1.tar.xz is missing" >&2; exit 1; }
echo "setup: ok"
