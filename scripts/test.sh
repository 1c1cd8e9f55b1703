#!/usr/bin/env bash
# Runs every check and test of Hearken, installing what the tests need first
# (Debian packages: cmake for libopus, pocketsphinx for hearken-verbal,
# iproute2 for the loopback-only network namespace; tests/peers/install.sh
# for the real WebRTC peers and for the speech the verbal-consent tests hear).
#
# Tests run inside a private network namespace with only `lo`, so nothing a
# test starts (the server, Chromium) can reach or be reached from any other
# network.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_cargo

missing=()
add_missing_build_tools missing
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
install_debian_packages "${missing[@]}"
# The real WebRTC peers of the interop tests: Chromium, Firefox ESR and
# GStreamer from Debian, aiortc from PyPI (in a venv), werift from npm. Then
# `speech`: the English pocketsphinx model, espeak-ng and sox (Debian), for
# crates/hearken-verbal's tests; `sipp`: SIPp (Debian's sip-tester) and
# baresip, the SIP peers of SIP dial-in's tests; `cluster`: NATS
# (nats-server) and PostgreSQL, which the cluster tests start privately, on
# their own ports inside the namespace (hearken-testkit's `services`).
tests/peers/install.sh all speech sipp cluster

echo "==> format"
cargo fmt --all -- --check
echo "==> build (fetches crates)"
cargo build --locked --workspace --all-targets
echo "==> clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

# The fleet load tests (300 real WebRTC clients against three servers) run
# last and alone: beside the rest of the suite on two cores, what they
# measured was the machine, and a speaker or a packet could miss its
# deadline. Both runs always happen, and the script fails if either does.
load_tests="cluster::load::"
tests="status=0
cargo test --locked --offline --workspace --no-fail-fast -- --skip $load_tests || status=\$?
echo '==> fleet load tests, alone'
cargo test --locked --offline -p hearken --test it $load_tests -- --test-threads=1 || status=\$?
exit \$status"
echo "==> tests"
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  unshare -n bash -c "ip link set lo up && $tests"
elif unshare -rn true 2>/dev/null; then
  unshare -rn bash -c "ip link set lo up && $tests"
else
  echo "warning: cannot create a network namespace here; tests run on this host's loopback" >&2
  bash -c "$tests"
fi
