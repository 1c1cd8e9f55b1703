#!/usr/bin/env bash
# Runs every check and test of Hearken, installing what the tests need first
# (Debian packages: cmake for libopus, chromium for the end-to-end test,
# iproute2 for the loopback-only network namespace).
#
# Tests run inside a private network namespace with only `lo`, so nothing a
# test starts (the server, Chromium) can reach or be reached from any other
# network.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install a Rust toolchain (1.89 or newer) first" >&2
  exit 1
fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(build-essential)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "==> format"
cargo fmt --all -- --check
echo "==> build (fetches crates)"
cargo build --locked --workspace --all-targets
echo "==> clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

tests="cargo test --locked --offline --workspace --no-fail-fast"
echo "==> tests"
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  unshare -n bash -c "ip link set lo up && $tests"
elif unshare -rn true 2>/dev/null; then
  unshare -rn bash -c "ip link set lo up && $tests"
else
  echo "warning: cannot create a network namespace here; tests run on this host's loopback" >&2
  $tests
fi
