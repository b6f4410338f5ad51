#!/usr/bin/env bash
# Runs the whole AERGO OS test suite: installs what it needs (idempotent), builds every binary
# in the one release profile the tests and the image share, then runs all tests — unit,
# property, end-to-end, QEMU boots and multi-node networks — and prints how many VM and
# multi-node tests ran.
#
#   scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# Test-only tools: tmux drives the dashboard, PostgreSQL checks AergoSQL's conformance suite.
need=()
for p in tmux postgresql; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# Formatting first: seconds, and a failure names the files.
if cargo fmt --version >/dev/null 2>&1; then
  echo "test: cargo fmt --all -- --check"
  cargo fmt --all -- --check
else
  echo "test: WARNING: rustfmt is not installed (rustup component add rustfmt): formatting NOT checked" >&2
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/aergo-target}"
export CARGO_TERM_COLOR=never
echo "test: building all binaries (release profile, target dir $CARGO_TARGET_DIR)"
cargo build --release --workspace --bins --locked
# The embedded kernel the QEMU tests boot: found in its cache, or built there once per machine
# (minutes on a cold cache: docs/APPLIANCE.md, "Embedded kernel"), as its own step.
echo "test: aergo-image kernel"
"$CARGO_TARGET_DIR/release/aergo-image" kernel

# Lints (the workspace's [workspace.lints] plus every warning) and documentation links, in the
# same release profile, before the tests.
if cargo clippy --version >/dev/null 2>&1; then
  echo "test: cargo clippy --workspace --all-targets --release --locked -- -D warnings"
  cargo clippy --workspace --all-targets --release --locked -- -D warnings
else
  echo "test: WARNING: clippy is not installed (rustup component add clippy): lints NOT checked" >&2
fi
echo "test: cargo doc --workspace --no-deps (broken intra-doc links denied)"
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links" \
  cargo doc --workspace --no-deps --release --locked --quiet

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# Count what ran in the VM and multi-node test binaries (tests/tests/appliance*.rs and
# libp2p networks in node/p2p/tests/net.rs and tests/tests/net_*.rs).
count() {
  awk -v pat="$1" '
    /^ *Running / { inbin = ($0 ~ pat) }
    inbin && /^test .* \.\.\. ok$/ { n++ }
    END { print n + 0 }' "$log"
}
vm=$(count 'tests/appliance')
multi=$(count 'tests/net')
passed=$(grep -Eo '^test result: [a-z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "VM tests run: $vm; multi-node tests run: $multi"
echo "$passed passed, $failed failed"
exit "$rc"
