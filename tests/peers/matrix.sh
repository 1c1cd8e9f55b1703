#!/usr/bin/env bash
# Runs the interop matrix: every peer client (firefox chromium aiortc gstreamer werift)
# in both modes (session, gateway) against a Hearken binary, all on loopback.
#
#   unshare -n tests/peers/matrix.sh HEARKEN_BIN OUTDIR [STACK[:MODE]]...
#   e.g. unshare -n tests/peers/matrix.sh target/debug/hearken /tmp/matrix
#        unshare -n tests/peers/matrix.sh target/debug/hearken /tmp/m aiortc:gateway werift
#
# Must run in a private network namespace (`unshare -n`, as root): it brings lo up
# and starts the server on 127.0.0.1. Needs what tests/peers/install.sh installs.
# Per cell it writes OUTDIR/<stack>-<mode>/ (received-<mid>.wav, logs), the client's
# JSON to OUTDIR/<stack>-<mode>.json and the call's consent log to
# OUTDIR/<stack>-<mode>.consent.json; a summary table at the end. Exit 0 when every
# cell's client exited 0.
#
# Env: SEND_SECONDS (default 10; the prompt is several seconds long), LOCATION (DE:
#      explicit consent, so the consent request is played), GST_ARGS (extra arguments
#      for the GStreamer client, e.g. --ecdsa-cert), HEARKEN_PEERS_VENV (aiortc venv),
#      HTTP_PORT (18080), MEDIA_PORT (41000), SPEECH_A / SPEECH_B (the two speakers'
#      audio, any format GStreamer decodes; default media/test/speaker-{a,b}.opus).
set -uo pipefail
[ $# -ge 2 ] || { sed -n 2,20p "$0" >&2; exit 2; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$(realpath "$1")"
OUT="$(realpath -m "$2")"
shift 2
CELLS=("$@")
[ ${#CELLS[@]} = 0 ] && CELLS=(firefox chromium aiortc gstreamer werift)
SEND_SECONDS="${SEND_SECONDS:-10}"
LOCATION="${LOCATION:-DE}"
GST_ARGS="${GST_ARGS:-}"
VENV="${HEARKEN_PEERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hearken/peers/aiortc-venv}"
SPEECH_A="${SPEECH_A:-$ROOT/media/test/speaker-a.opus}"
SPEECH_B="${SPEECH_B:-$ROOT/media/test/speaker-b.opus}"
HTTP_PORT="${HTTP_PORT:-18080}"
MEDIA_PORT="${MEDIA_PORT:-41000}"
TOKEN="peers-matrix-token"
BASE="http://127.0.0.1:$HTTP_PORT"

ip link set lo up
if ip -o addr | grep -v ' lo ' | grep -q inet; then
  echo "matrix.sh: run me inside a loopback-only network namespace (unshare -n)" >&2
  exit 2
fi
mkdir -p "$OUT"
"$HERE/make-wav.sh" "$SPEECH_A" "$OUT/speaker-a.wav"
"$HERE/make-wav.sh" "$SPEECH_B" "$OUT/speaker-b.wav"
rm -rf "$OUT/data"
cat >"$OUT/hearken.toml" <<EOF
[http]
listen = "127.0.0.1:$HTTP_PORT"
[media]
bind_ip = "127.0.0.1"
advertised_ip = "127.0.0.1"
port_base = $MEDIA_PORT
workers = 1
[storage]
data_dir = "$OUT/data"
[auth]
tokens = ["$TOKEN"]
EOF
"$BIN" serve --config "$OUT/hearken.toml" >"$OUT/hearken.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 100); do
  curl -sf "$BASE/healthz" >/dev/null && break
  sleep 0.1
done
curl -sf "$BASE/healthz" >/dev/null || { echo "matrix.sh: server did not start (see $OUT/hearken.log)" >&2; exit 1; }

client_cmd() { # stack -> command prefix
  case "$1" in
    firefox) echo python3 "$HERE/whip_browser.py" --browser firefox ;;
    chromium) echo python3 "$HERE/whip_browser.py" --browser chromium ;;
    aiortc) echo "$VENV/bin/python" "$HERE/whip_aiortc.py" ;;
    gstreamer) echo /usr/bin/python3 "$HERE/whip_gstreamer.py" $GST_ARGS ;;
    werift) echo node "$HERE/werift/whip-client.js" ;;
    *) echo "unknown stack $1" >&2; return 1 ;;
  esac
}

failed=0
rows=()
for cell in "${CELLS[@]}"; do
  stack="${cell%%:*}"
  modes=(session gateway)
  [ "$cell" != "$stack" ] && modes=("${cell#*:}")
  for mode in "${modes[@]}"; do
    name="$stack-$mode"
    call="peers-$name-$(date +%s)"
    dir="$OUT/$name"
    rm -rf "$dir"
    mkdir -p "$dir"
    audio=(--audio "$OUT/speaker-a.wav")
    [ "$mode" = gateway ] && audio+=(--audio2 "$OUT/speaker-b.wav")
    echo "=== $name (call $call)" >&2
    t0=$SECONDS
    # shellcheck disable=SC2046
    timeout -k 5 $((SEND_SECONDS + 120)) $(client_cmd "$stack") --whip "$BASE/whip/$call" --token "$TOKEN" \
      --mode "$mode" "${audio[@]}" --seconds "$SEND_SECONDS" --out "$dir" --location "$LOCATION" \
      >"$dir/stdout.log" 2>"$dir/stderr.log"
    rc=$?
    tail -n 1 "$dir/stdout.log" >"$OUT/$name.json"
    curl -s -H "Authorization: Bearer $TOKEN" "$BASE/v1/calls/$call/consent" >"$OUT/$name.consent.json"
    [ $rc = 0 ] || failed=$((failed + 1))
    rows+=("$(python3 - "$OUT/$name.json" "$OUT/$name.consent.json" "$name" "$rc" "$((SECONDS - t0))" <<'EOF'
import json, sys
res, consent, name, rc, secs = sys.argv[1:]
try:
    r = json.load(open(res))
except Exception:
    r = {"error": "no JSON from the client"}
try:
    ev = json.load(open(consent)).get("events", [])
except Exception:
    ev = []
prompts = [e for e in ev if e.get("event") == "prompt_played"]
audible = sum(1 for e in prompts if e.get("audible"))
tracks = " ".join(f"mid={t.get('mid')}:rx={t.get('received_packets')}pk/{t.get('received_voiced_seconds')}s-voiced"
                  for t in r.get("tracks", []))
err = (r.get("error") or "")[:90]
print(f"{name:20} exit={rc} connected={str(r.get('connected')).lower():5} prompts_played={len(prompts)}"
      f"(audible {audible}) {tracks} {secs}s {err}")
EOF
)")
  done
done
echo
printf '%s\n' "${rows[@]}"
echo "$(( ${#rows[@]} - failed )) passed, $failed failed"
[ $failed = 0 ]
