#!/usr/bin/env bash
# Builds and runs the server on its embedded defaults (no config file, no
# external service), installing the one build tool the crates need that a
# fresh Debian machine may lack: cmake (libopus is built from source).
# Extra arguments go to `hearken serve` (e.g. --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_cargo
missing=()
add_missing_build_tools missing
install_debian_packages "${missing[@]}"
exec cargo run --release --locked --bin hearken -- serve "$@"
