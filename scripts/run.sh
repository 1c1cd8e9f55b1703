#!/usr/bin/env bash
# Builds and runs the server on its embedded defaults (no config file, no
# external service), installing the one build tool the crates need that a
# fresh Debian machine may lack: cmake (libopus is built from source).
# Extra arguments go to `hearken serve` (e.g. --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install a Rust toolchain (1.89 or newer) first" >&2
  exit 1
fi
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(build-essential)
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
exec cargo run --release --locked --bin hearken -- serve "$@"
