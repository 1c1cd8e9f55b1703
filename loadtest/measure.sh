#!/usr/bin/env bash
# One capacity measurement, as loadtest/RESULTS.md reports them: a fresh
# release server pinned to CPU 0 (one media worker), the load generator
# pinned to CPU 1, both on loopback; the generator's JSON report is the last
# line of the output.
#
#   loadtest/measure.sh [--transcribe linear16|ogg-opus] [--server-env K=V]...
#                       [--server-bin PATH] [--stun-flood PPS:SECONDS] -- LOADTEST_ARGS...
#
# e.g. loadtest/measure.sh -- --calls 200 --speakers-per-call 5 --duration 60 --ramp 100
#
# With `--ingest roq` among the loadtest arguments, the server also gets
# its native ingest (RTP over QUIC) listener on 127.0.0.1:18433.
#
# --server-bin runs another hearken binary (an A/B comparison with an older
# build); --stun-flood also sends PPS forged STUN binding requests per
# second to the server's media port for SECONDS from the start (use the
# ramp plus the hold; hearken-stun-flood, on the generator's core); its
# report goes to stderr.
#
# The server's data goes to a temporary directory that is removed afterwards.
# Run `cargo build --release -p hearken -p hearken-loadtest` first; the
# binaries are taken from $HEARKEN_BIN_DIR when set, else from
# ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${HEARKEN_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
transcribe=""
server_env=()
server_bin=""
flood_pps=""
flood_seconds=""
while (($#)); do
  case "$1" in
    --transcribe) transcribe="$2"; shift 2 ;;
    --server-env) server_env+=("$2"); shift 2 ;;
    --server-bin) server_bin="$2"; shift 2 ;;
    --stun-flood) flood_pps="${2%%:*}"; flood_seconds="${2##*:}"; shift 2 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (loadtest arguments go after --)" >&2; exit 2 ;;
  esac
done
for bin in hearken hearken-loadtest; do
  [ -x "$target/$bin" ] || { echo "error: $target/$bin is missing; build it with cargo build --release" >&2; exit 2; }
done
port=18080
fake_port=18765
quic_port=18433
data="$(mktemp -d)"
env_list=(
  HEARKEN_HTTP_LISTEN="127.0.0.1:$port"
  HEARKEN_STORAGE_DATA_DIR="$data"
  HEARKEN_MEDIA_WORKERS=1
  HEARKEN_MEDIA_PORT_BASE=41000
  HEARKEN_LIMITS_MAX_SESSIONS=20000
  # The generator's speakers give no location; since unknown locations fail
  # closed (explicit), say they need no consent, so what is measured is
  # recording, as RESULTS.md reports. (A build older than these settings
  # refuses unknown HEARKEN_ keys: drop these two lines for --server-bin A/B
  # runs against one.)
  HEARKEN_CONSENT_UNKNOWN_LOCATION_MODE=none
  HEARKEN_CONSENT_VERBAL=false
  RUST_LOG=warn
)
loadtest_extra=()
if [ -n "$transcribe" ]; then
  env_list+=(
    HEARKEN_TRANSCRIPTION_BACKEND=deepgram
    HEARKEN_TRANSCRIPTION_DEEPGRAM_URL="http://127.0.0.1:$fake_port"
    HEARKEN_TRANSCRIPTION_DEEPGRAM_ENCODING="$transcribe"
    DEEPGRAM_API_KEY=fake-deepgram-key
  )
  loadtest_extra+=(--fake-deepgram-port "$fake_port")
fi
# Native ingest is off unless its listener is set; only a roq run needs it.
prev=""
for arg in "$@"; do
  if [ "$arg" = "--ingest=roq" ] || { [ "$prev" = "--ingest" ] && [ "$arg" = "roq" ]; }; then
    env_list+=(HEARKEN_INGEST_QUIC_LISTEN="127.0.0.1:$quic_port")
    break
  fi
  prev="$arg"
done
env_list+=("${server_env[@]}")
server_bin="${server_bin:-$target/hearken}"
env "${env_list[@]}" taskset -c 0 "$server_bin" serve >"$data/server.log" 2>&1 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
# Real-time priority keeps the generator's 20 ms pacing honest while other
# work runs on the machine (best effort: needs the privilege).
rt=()
chrt -r 10 true 2>/dev/null && rt=(chrt -r 10)
flood=""
if [ -n "$flood_pps" ]; then
  taskset -c 1 "$target/hearken-stun-flood" --to 127.0.0.1:41000 --pps "$flood_pps" \
    --seconds "$flood_seconds" >"$data/flood.json" &
  flood=$!
fi
"${rt[@]}" taskset -c 1 "$target/hearken-loadtest" \
  --url "http://127.0.0.1:$port" --token hearken-dev --server-pid "$server" \
  "${loadtest_extra[@]}" "$@" || status=$?
if [ -n "$flood" ]; then
  wait "$flood" || true
  echo "stun flood: $(cat "$data/flood.json")" >&2
fi
exit "${status:-0}"
