#!/bin/bash
# Publish a WAV file to a WHIP endpoint with headless Debian Chromium + whip-client.html.
#
#   run-whip-chromium.sh WHIP_URL TOKEN SECONDS WAV [TIMEOUT_SECONDS] [EXTRA_QUERY]
#   e.g. run-whip-chromium.sh http://127.0.0.1:8080/whip/call-1 secret 3 /tmp/speech.wav 30 '&raw=1'
#
# Must already be running inside a loopback-only network namespace (`unshare -n`, lo up),
# next to the WHIP server under test; it refuses to run if any interface besides lo exists.
# Prints the page's "WHIP ..." console lines; exit 0 = "WHIP done", 1 = "WHIP error: ...",
# 2 = timeout, 3 = bad usage/environment. Env: CHROMIUM (default chromium), KEEP_LOG=path.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 4 ] || { sed -n '2,12p' "$0"; exit 3; }
WHIP_URL=$1; TOKEN=$2; SECONDS_=$3; WAV=$4; TIMEOUT=${5:-30}; EXTRA=${6:-}
CHROMIUM=${CHROMIUM:-chromium}

# (/sys/class/net is not remounted by `unshare -n`, so ask `ip` which sees the netns)
OTHER=$(ip -o link show | awk -F': ' '{print $2}' | grep -v '^lo$')
[ -z "$OTHER" ] || { echo "refusing: interface(s) $OTHER present; run inside 'unshare -n'" >&2; exit 3; }
ip link set lo up 2>/dev/null || true

# Chromium silently sends SILENCE if the file is missing or not a format it accepts
# (WAVE_FORMAT_EXTENSIBLE, e.g. sox's 24-bit output), so check before starting.
WAVPATH=${WAV%\%noloop}
[ -r "$WAVPATH" ] || { echo "fake audio file not readable: $WAVPATH" >&2; exit 3; }
FMT=$(od -An -tu2 -j20 -N2 "$WAVPATH" | tr -d ' ')
[ "$(head -c4 "$WAVPATH")" = RIFF ] && { [ "$FMT" = 1 ] || [ "$FMT" = 3 ]; } || {
  echo "unsupported WAV (need RIFF PCM format 1 or float format 3, got format tag $FMT): $WAVPATH" >&2; exit 3; }

urlenc() { python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$1"; }
URL="file://$HERE/whip-client.html?whip=$(urlenc "$WHIP_URL")&token=$(urlenc "$TOKEN")&seconds=$SECONDS_$EXTRA"

PROFILE=$(mktemp -d); LOG=$(mktemp)
"$CHROMIUM" --headless --no-sandbox --disable-gpu \
  --use-fake-ui-for-media-stream --use-fake-device-for-media-stream \
  --use-file-for-fake-audio-capture="$WAV" \
  --disable-background-networking --disable-component-update --disable-sync --no-first-run \
  --allow-loopback-in-peer-connection --user-data-dir="$PROFILE" \
  --enable-logging=stderr --v=0 \
  "$URL" >/dev/null 2>"$LOG" &
PID=$!

RC=2
DEADLINE=$(( $(date +%s) + TIMEOUT ))
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
  if grep -q ':INFO:CONSOLE.*"WHIP done"' "$LOG"; then RC=0; break; fi
  if grep -q ':INFO:CONSOLE.*"WHIP error: ' "$LOG"; then RC=1; break; fi
  kill -0 "$PID" 2>/dev/null || { echo "chromium exited early" >&2; break; }
  sleep 0.1
done
kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null
# console lines look like: [pid:tid:MMDD/HHMMSS.us:INFO:CONSOLE:LINE] "WHIP connected", source: file:///... (LINE)
sed -n 's/^.*:INFO:CONSOLE[^]]*\] "\(WHIP .*\)", source: .*$/\1/p' "$LOG"
[ $RC = 2 ] && echo "timeout after ${TIMEOUT}s" >&2
[ -n "${KEEP_LOG:-}" ] && cp "$LOG" "$KEEP_LOG"
rm -rf "$PROFILE" "$LOG"
exit $RC
