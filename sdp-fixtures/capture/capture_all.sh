#!/bin/bash
# Regenerate every fixture in sdp-fixtures/ (run as root; all peers in `unshare -n`).
#   sdp-fixtures/capture/capture_all.sh
# Env: AIORTC_PY (python with aiortc installed; default /work/venv-aiortc/bin/python)
#      WERIFT_NODE_PATH (node_modules dir containing werift; default /tmp/werift/node_modules;
#      if it does not exist the werift fixture is left as it is)
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
FIX="$(dirname "$HERE")"
AIORTC_PY="${AIORTC_PY:-/work/venv-aiortc/bin/python}"
RAW="$(mktemp -d)"
unshare -n "$HERE/capture_chromium.sh" "$RAW"
unshare -n bash -c "ip link set lo up; '$AIORTC_PY' '$HERE/capture_aiortc.py' '$RAW'"
unshare -n bash -c "ip link set lo up; timeout 30 /usr/bin/python3 '$HERE/capture_gstreamer.py' '$RAW'"
WERIFT_NODE_PATH="${WERIFT_NODE_PATH:-/tmp/werift/node_modules}"
if [ -d "$WERIFT_NODE_PATH/werift" ]; then
  unshare -n bash -c "ip link set lo up; NODE_PATH='$WERIFT_NODE_PATH' timeout 30 node '$HERE/capture_werift.js' '$RAW'"
fi
python3 "$HERE/make_fixtures.py" "$RAW" "$FIX"
echo "raw captures left in $RAW"
