#!/bin/bash
# Capture Chromium SDP offers into OUTDIR (default: ../ i.e. sdp-fixtures/, raw files).
# Must run in a private loopback-only network namespace:
#   unshare -n sdp-fixtures/capture/capture_chromium.sh /tmp/raw
# Needs: Debian `chromium`, python3 (stdlib only).
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$(realpath -m "${1:-$HERE/raw}")"
PORT="${PORT:-8765}"
ip link set lo up
mkdir -p "$OUT"
PROFILE="$(mktemp -d)"
python3 "$HERE/capture_server.py" "$OUT" "$PORT" &
SRV=$!
sleep 0.5
chromium --headless --no-sandbox --disable-gpu \
  --use-fake-ui-for-media-stream --use-fake-device-for-media-stream \
  --disable-background-networking --disable-component-update --disable-sync --no-first-run \
  --allow-loopback-in-peer-connection --user-data-dir="$PROFILE" \
  "http://127.0.0.1:$PORT/capture.html" >"$OUT/chromium.log" 2>&1 &
CHR=$!
# the server exits when the page POSTs /done (cap: 60 s)
for _ in $(seq 600); do kill -0 "$SRV" 2>/dev/null || break; sleep 0.1; done
kill "$SRV" 2>/dev/null || true
kill "$CHR" 2>/dev/null || true
wait "$CHR" 2>/dev/null || true
chromium --version > "$OUT/chromium-version.txt" 2>/dev/null || true
rm -rf "$PROFILE"
ls -l "$OUT"
